"""The spend views (`v_spend`, `v_spend_daily`) sum what `valor/spend.py` sums from the same log (decision 47)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import duckdb

from schemas.events import (
    AttemptFailed,
    AttemptStopped,
    Cancelled,
    Created,
    Dispatched,
    Evidence,
    RetryScheduled,
    Started,
    Succeeded,
    TokenUsage,
)
from valor import analytics, bus, spend
from valor.client import ValorClient

from .conftest import cli_rows, doc_queries

DAY = dt.datetime(2026, 5, 14, 12, tzinfo=dt.UTC).timestamp()


def ev(usd: float | None, n: int = 0, estimated: bool = False) -> Evidence:
    tokens = TokenUsage(input=n, output=n // 10, cache_read=n // 2, cache_creation=n // 4) if n else None
    return Evidence(cost_usd=usd, tokens=tokens, cost_estimated=estimated)


HISTORY = [
    # A chat's plan: the respond promise (sender 42) and its code step, which fails, retries and is cancelled.
    Created(id=1, title="hi", task="respond", chat_id=7, message_id=1, input={"sender_id": 42}, at=DAY),
    Dispatched(id=1, attempt=1, at=DAY), Started(id=1, attempt=1, at=DAY),
    Succeeded(id=1, attempt=1, evidence=ev(0.0123, 1200, estimated=True), at=DAY + 1),
    Created(id=2, title="fix", task="code", chat_id=7, parent_id=1, at=DAY + 2),
    Dispatched(id=2, attempt=1, at=DAY + 2), Started(id=2, attempt=1, at=DAY + 2),
    AttemptFailed(id=2, attempt=1, error="timed out", evidence=ev(0.3071, 40_000), at=DAY + 10),
    RetryScheduled(id=2, next_attempt=2, not_before=DAY + 15, at=DAY + 10),
    Dispatched(id=2, attempt=2, at=DAY + 15), Started(id=2, attempt=2, at=DAY + 15),
    Cancelled(id=2, reason="stop", at=DAY + 30),
    AttemptStopped(id=2, attempt=2, evidence=ev(0.0517, 7000, estimated=True), at=DAY + 31),
    # The same stop stored again past JetStream's duplicate window: the projection counts it once.
    AttemptStopped(id=2, attempt=2, evidence=ev(0.0517, 7000, estimated=True), at=DAY + 400),
    # Another chat, the day before, no user; an attempt with evidence but no spend (counted by neither).
    Created(id=3, title="other", task="code", chat_id=8, at=DAY - 86400),
    Dispatched(id=3, attempt=1, at=DAY - 86400), Started(id=3, attempt=1, at=DAY - 86400),
    Succeeded(id=3, attempt=1, evidence=ev(1.2345, 300_000), at=DAY - 86000),
    Created(id=4, title="listed", task="echo", at=DAY - 86400),
    Dispatched(id=4, attempt=1, at=DAY - 86400), Started(id=4, attempt=1, at=DAY - 86400),
    Succeeded(id=4, attempt=1, evidence=ev(None), at=DAY - 86300),
]


def rows(db, sql: str) -> list[dict]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        cur = con.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        con.close()


async def test_the_spend_views_sum_what_valor_usage_sums_from_the_same_log(nc, js, tmp_path, duckdb_cli):
    for n, e in enumerate(HISTORY):
        await bus.publish_event(js, e, f"spend-view-{n}")
    db = tmp_path / "spend.duckdb"
    await analytics.sync(nc, db)
    charges = spend.charges((await ValorClient(nc).projection()).promises.values())
    want = spend.totals(charges)

    # One row per charge, each exactly the charge the projection keeps.
    got = rows(db, "SELECT * FROM v_spend ORDER BY promise_id, attempt")
    assert [(r["promise_id"], r["attempt"], r["type"], r["chat_id"], r["plan_id"], r["user_id"], r["cost_usd"],
             r["input_tokens"], r["output_tokens"], r["cache_read_tokens"], r["cache_creation_tokens"])
            for r in got] == [
        (c.promise_id, c.attempt, c.task, c.chat_id, c.plan, c.user_id, c.usd or 0.0, c.tokens.input,
         c.tokens.output, c.tokens.cache_read, c.tokens.cache_creation)
        for c in sorted(charges, key=lambda c: (c.promise_id, c.attempt))]
    assert [(r["outcome"], r["estimated"], r["day"].isoformat()) for r in got] == [
        ("succeeded", True, "2026-05-14"), ("attempt_failed", False, "2026-05-14"),
        ("attempt_stopped", True, "2026-05-14"), ("succeeded", False, "2026-05-13")]

    # By day and type: the same attempts, dollars (rounded to 6 places by both) and tokens.
    daily = rows(db, "SELECT * FROM v_spend_daily")
    by_day_type: dict[tuple[str, str], spend.Total] = defaultdict(spend.Total)
    for c in charges:
        by_day_type[spend.day_of(c.at), c.task].add(c.usd, c.tokens)
    assert {(r["day"].isoformat(), r["type"]): (r["attempts"], r["cost_usd"], r["input_tokens"], r["output_tokens"],
                                                 r["cache_read_tokens"], r["cache_creation_tokens"])
            for r in daily} == {k: (t.attempts, round(t.usd, 6), t.input, t.output, t.cache_read, t.cache_creation)
                                for k, t in by_day_type.items()}
    by_day = defaultdict(float)
    for r in daily:
        by_day[r["day"].isoformat()] += r["cost_usd"]
    assert {k: round(v, 6) for k, v in by_day.items()} == {k: t.as_dict()["usd"] for k, t in want.by_day.items()}
    assert round(sum(r["cost_usd"] for r in daily), 6) == want.all.as_dict()["usd"]
    assert sum(r["attempts"] for r in daily) == want.all.attempts == 4

    # The DuckDB CLI users read the file with (another DuckDB version) reads the same views.
    assert [(r["promise_id"], r["attempt"], r["cost_usd"]) for r in cli_rows(duckdb_cli, db, "SELECT * FROM v_spend ORDER BY promise_id, attempt")
            ] == [(r["promise_id"], r["attempt"], r["cost_usd"]) for r in got]


async def test_the_documented_spend_queries_answer_what_valor_usage_sums(nc, js, tmp_path):
    for n, e in enumerate(HISTORY):
        await bus.publish_event(js, e, f"spend-query-{n}")
    db = tmp_path / "spend.duckdb"
    await analytics.sync(nc, db)
    want = spend.totals(spend.charges((await ValorClient(nc).projection()).promises.values()))
    queries = doc_queries()

    def r4(t: spend.Total) -> float:
        return round(t.usd, 4)

    assert [(r["day"].isoformat(), r["attempts"], r["cost_usd"]) for r in rows(db, queries["spend_per_day"])] == \
        [(day, t.attempts, r4(t)) for day, t in sorted(want.by_day.items())] == \
        [("2026-05-13", 1, 1.2345), ("2026-05-14", 3, 0.3711)]
    assert [(r["chat_id"], r["user_id"], r["cost_usd"]) for r in rows(db, queries["spend_per_chat_and_user"])] == \
        [(8, None, 1.2345), (7, 42, 0.3711)]
    assert r4(want.by_chat[7]) == r4(want.by_user[42]) == 0.3711
    assert [(r["plan_id"], r["promises"], r["attempts"], r["cost_usd"])
            for r in rows(db, queries["spend_per_plan"])] == [(1, 2, 3, r4(want.by_plan[1]))]
    assert [(r["promise_id"], r["cost_usd"], r["estimated"]) for r in rows(db, queries["costliest_promises"])] == \
        [(pid, r4(t), est) for (pid, t), est in zip(want.top(10), (False, True, True), strict=True)]
