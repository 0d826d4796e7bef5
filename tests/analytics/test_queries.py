"""The queries of docs/analytics.md, answered on a known history (see history.py).

The queries are read out of the doc by name, so the doc and these answers
cannot drift apart.  The file is read with the Python package and with the
real `duckdb` CLI from PyPI, which must see the same facts as `valor list`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from valor import analytics, bus
from valor.natsserver import NatsCluster

from . import history
from .conftest import cli_rows, doc_queries

QUERIES = doc_queries()
ROUNDING_STEP = 0.0011  # round(x, 3), plus float error


@dataclass
class Known:
    url: str
    db: Path
    ids: dict[str, int]
    sent_at: dict[int, float]
    report: analytics.SyncReport

    def rows(self, name: str) -> list[dict]:
        con = duckdb.connect(str(self.db), read_only=True)
        try:
            cur = con.execute(QUERIES[name])
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        finally:
            con.close()


async def sync_once(url: str, db: Path) -> analytics.SyncReport:
    nc = await bus.connect(url, name="analytics-test")
    try:
        return await analytics.sync(nc, db)
    finally:
        await nc.close()


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    cluster = NatsCluster(size=1).start()
    try:
        produced = asyncio.run(history.produce(cluster.url))
        db = tmp_path_factory.mktemp("analytics") / "analytics.duckdb"
        report = asyncio.run(sync_once(cluster.url, db))
        yield Known(cluster.url, db, produced["ids"], produced["sent_at"], report)
    finally:
        cluster.cleanup()


def day_of(ts: float) -> dt.date:
    return dt.datetime.fromtimestamp(ts, dt.UTC).date()


def test_the_doc_names_every_query_the_tests_check():
    assert set(QUERIES) == {
        "promises_by_state", "slowest_types", "failure_rate_per_type_per_day", "retries_per_promise",
        "queue_wait_per_type", "p95_attempt_duration_per_type", "chats_with_most_promises",
        "caught_up_messages_per_day", "dlq_reasons", "executor_load", "promise_story",
        # answered on a history with spend in test_spend_views.py
        "spend_per_day", "spend_per_chat_and_user", "spend_per_plan", "costliest_promises",
    }


def test_a_sync_copies_every_stream_message(known):
    assert known.report.copied["CHAT"] == 3 and known.report.copied["DLQ"] == 2
    assert known.report.promises == history.PROMISES
    con = duckdb.connect(str(known.db), read_only=True)
    try:
        assert con.execute("SELECT count(*), max(seq) FROM events").fetchone() == (
            known.report.copied["PROMISES"], known.report.last_seq["PROMISES"])
        assert con.execute("SELECT count(*) FROM messages").fetchone() == (2,)  # the undecodable one is in the DLQ
        assert con.execute("SELECT stream, last_seq FROM sync_state ORDER BY stream").fetchall() == [
            ("CHAT", 3), ("DLQ", 2), ("PROMISES", known.report.last_seq["PROMISES"])]
    finally:
        con.close()


def test_promises_by_state(known):
    assert known.rows("promises_by_state") == [
        {"state": "cancelled", "promises": 2}, {"state": "failed", "promises": 1},
        {"state": "succeeded", "promises": 12}]


def test_slowest_types_puts_sleep_first_then_the_retried_fail(known):
    rows = known.rows("slowest_types")
    assert [(r["type"], r["succeeded"]) for r in rows[:2]] == [("sleep", 1), ("fail", 1)]
    assert {r["type"]: r["succeeded"] for r in rows} == {"sleep": 1, "fail": 1, "echo": 8, "respond": 2}
    assert rows[0]["avg_seconds"] >= 1.0 and rows[1]["avg_seconds"] >= 0.27  # flaky waited out its backoff (0.3 s ± 10%)


def test_failure_rate_per_type_per_day(known):
    rows = known.rows("failure_rate_per_type_per_day")
    assert {r["day"] for r in rows} <= {day_of(known.sent_at[9]), dt.datetime.now(dt.UTC).date()}
    totals: dict[str, list[int]] = {}
    for r in rows:  # summed over days: the test may run across midnight UTC
        t = totals.setdefault(r["type"], [0, 0, 0, 0])
        for i, column in enumerate(("finished", "succeeded", "failed", "cancelled")):
            t[i] += r[column]
    assert totals == {"echo": [9, 8, 0, 1], "fail": [2, 1, 1, 0], "respond": [2, 2, 0, 0], "sleep": [2, 1, 0, 1]}
    rates = {r["type"]: r["failure_rate"] for r in rows}
    assert rates == {"echo": 0.0, "fail": 0.5, "respond": 0.0, "sleep": 0.0}


def test_retries_per_promise(known):
    rows = known.rows("retries_per_promise")
    assert [(r["id"], r["type"], r["state"], r["attempts"], r["retries"]) for r in rows] == [
        (known.ids["flaky"], "fail", "succeeded", 2, 1),
        (known.ids["broken"], "fail", "failed", 2, 1),
    ]
    assert rows[0]["error"] is None and "failing on purpose" in rows[1]["error"]


def test_queue_wait_per_type_counts_dispatched_promises_only(known):
    rows = known.rows("queue_wait_per_type")
    assert {r["type"]: r["promises"] for r in rows} == {"echo": 8, "sleep": 2, "fail": 2, "respond": 2}
    assert all(0 <= r["avg_wait_seconds"] <= r["max_wait_seconds"] < 10 for r in rows)
    con = duckdb.connect(str(known.db), read_only=True)
    try:  # c3 waited for c1 and c2 to run first
        c1, c3 = (con.execute("SELECT date_diff('microsecond', created_at, dispatched_at) FROM promises WHERE id = ?",
                              [known.ids[n]]).fetchone()[0] for n in ("c1", "c3"))
    finally:
        con.close()
    assert c3 > c1


def test_p95_attempt_duration_per_type(known):
    rows = known.rows("p95_attempt_duration_per_type")
    assert rows[0]["type"] == "sleep" and rows[0]["max_seconds"] >= 1.0
    assert {r["type"]: r["attempts"] for r in rows} == {"sleep": 2, "fail": 4, "echo": 8, "respond": 2}


def test_chats_with_most_promises(known):
    assert known.rows("chats_with_most_promises") == [
        {"chat_id": 9, "promises": 3, "messages_answered": 1, "succeeded": 3},
        {"chat_id": 7, "promises": 2, "messages_answered": 1, "succeeded": 2},
    ]


def test_caught_up_messages_per_day(known):
    assert known.rows("caught_up_messages_per_day") == [
        {"day": day_of(known.sent_at[7]), "messages": 1, "caught_up": 1},
        {"day": day_of(known.sent_at[9]), "messages": 1, "caught_up": 0},
    ]


def test_dlq_reasons(known):
    rows = known.rows("dlq_reasons")
    assert [(r["origin_stream"], r["reason"], r["messages"]) for r in rows] == [
        ("CHAT", "undecodable message", 1), ("COMMANDS", "undecodable command", 1)]


def test_executor_load(known):
    [row] = known.rows("executor_load")
    assert (row["executor"], row["attempts"], row["failed"]) == ("exec-a", 16, 3)


def test_promise_story_tells_a_retry(known):
    sql = QUERIES["promise_story"].replace("promise_id = 12", f"promise_id = {known.ids['flaky']}")
    con = duckdb.connect(str(known.db), read_only=True)
    try:
        types = [r[0] for r in con.execute(f"SELECT type FROM ({sql.rstrip(';')})").fetchall()]
    finally:
        con.close()
    assert types == ["created", "dispatched", "started", "attempt_failed", "retry_scheduled", "dispatched",
                     "started", "succeeded"]


def test_the_duckdb_cli_from_pypi_reads_the_same_facts_as_valor_list(known, duckdb_cli):
    env = dict(os.environ, VALOR_NATS_URL=known.url)
    out = subprocess.run([str(Path(sys.executable).parent / "valor"), "list", "--json"], capture_output=True,
                         text=True, env=env, timeout=30, check=True)
    listed = [(p["id"], p["type"], p["state"], p["attempts"], p["error"]) for p in json.loads(out.stdout)]
    rows = cli_rows(duckdb_cli, known.db, "select id, type, state, attempts, error from promises order by id")
    assert [(r["id"], r["type"], r["state"], r["attempts"], r["error"]) for r in rows] == listed
    assert len(listed) == history.PROMISES


def in_python_types(rows: list[dict], like: list[dict]) -> list[dict]:
    """CLI JSON rows as the Python package gives them: counts come as text, days and times as ISO text."""
    kinds = {k: type(v) for r in like for k, v in r.items() if v is not None}

    def convert(name: str, value):
        kind = kinds.get(name)
        if value is None or kind is None or isinstance(value, kind):
            return value
        if kind in (dt.date, dt.datetime):
            return kind.fromisoformat(value)
        return kind(value)

    return [{k: convert(k, v) for k, v in r.items()} for r in rows]


def exact_and_measured(rows: list[dict]) -> list[tuple[dict, dict]]:
    """Each row split into its exact columns and its measured (float) ones, sorted by the exact ones."""
    split = [({k: v for k, v in r.items() if not isinstance(v, float)},
              {k: v for k, v in r.items() if isinstance(v, float)}) for r in rows]
    return sorted(split, key=lambda pair: repr(pair[0]))  # the measured ones may differ a little


def test_every_documented_query_runs_in_the_duckdb_cli(known, duckdb_cli):
    """The CLI (DuckDB 1.5) and the package (2.x) give the same rows, compared as multisets.

    The order is not compared: three queries sort on measured times, and the
    two versions may round a half millisecond (0.0065) to different sides, so
    types with near-equal times swap places.  The order itself is pinned on the
    package's answers by the tests above.  Measured values may differ by that
    one rounding step; everything else must be equal.
    """
    for name, sql in QUERIES.items():
        expected = known.rows(name)
        rows = in_python_types(cli_rows(duckdb_cli, known.db, sql), expected)
        assert exact_and_measured(rows) == [(exact, pytest.approx(measured, abs=ROUNDING_STEP))
                                            for exact, measured in exact_and_measured(expected)], name
