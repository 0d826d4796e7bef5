"""Spend folded from the log: totals by day, type, chat, user and plan, and the words of /usage.  Pure."""

import datetime

from promises.projection import Projection
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
from services.executor import streamjson
from valor import spend

DAY = datetime.datetime(2026, 5, 14, 12, tzinfo=datetime.UTC).timestamp()


def ev(usd, n=100):
    return Evidence(cost_usd=usd, tokens=TokenUsage(input=n, output=n // 10))


def history() -> Projection:
    state = Projection()
    events = [
        Created(id=1, title="hi", task="respond", chat_id=7, message_id=1, input={"sender_id": 42}, at=DAY),
        Dispatched(id=1, attempt=1), Started(id=1, attempt=1, at=DAY),
        Succeeded(id=1, attempt=1, evidence=ev(0.01), at=DAY),
        Created(id=2, title="fix", task="code", chat_id=7, parent_id=1, at=DAY),
        Dispatched(id=2, attempt=1), Started(id=2, attempt=1, at=DAY),
        AttemptFailed(id=2, attempt=1, error="timed out", evidence=ev(0.30), at=DAY + 10),
        RetryScheduled(id=2, next_attempt=2, not_before=DAY + 15), Dispatched(id=2, attempt=2), Started(id=2, attempt=2, at=DAY + 20),
        Cancelled(id=2, reason="stop", at=DAY + 30),
        AttemptStopped(id=2, attempt=2, evidence=ev(0.05), at=DAY + 31),
        AttemptStopped(id=2, attempt=2, evidence=ev(0.05), at=DAY + 32),  # once per attempt
        Created(id=3, title="other", task="code", chat_id=8, at=DAY - 86400),
        Dispatched(id=3, attempt=1), Started(id=3, attempt=1, at=DAY - 86400),
        Succeeded(id=3, attempt=1, evidence=ev(1.0, 1000), at=DAY - 86400),
    ]
    for e in events:
        state.apply(e)
    return state


def test_totals_sum_every_attempts_spend_by_day_type_chat_user_and_plan():
    t = spend.totals(spend.charges(history().promises.values()))
    assert round(t.all.usd, 6) == 1.36 and t.all.attempts == 4 and t.all.input == 1300
    assert {k: round(v.usd, 6) for k, v in t.by_day.items()} == {"2026-05-13": 1.0, "2026-05-14": 0.36}
    assert {k: round(v.usd, 6) for k, v in t.by_type.items()} == {"respond": 0.01, "code": 1.35}
    assert {k: round(v.usd, 6) for k, v in t.by_user.items()} == {42: 0.36, None: 1.0}
    assert {k: round(v.usd, 6) for k, v in t.by_plan.items()} == {1: 0.36, None: 1.0}
    assert [pid for pid, _ in t.top()] == [3, 2, 1]


def test_totals_of_one_chat_since_a_time():
    charges = spend.charges(history().promises.values())
    assert round(spend.totals(charges, chat_id=7).all.usd, 6) == 0.36
    assert round(spend.totals(charges, since=DAY + 5).all.usd, 6) == 0.35


def test_the_usage_report_says_today_this_month_types_and_top_promises():
    text = spend.report(spend.charges(history().promises.values()), DAY + 60, chat_id=7)
    assert text.splitlines() == [
        "Today: $0.36 (3 attempts, 330 tokens)",
        "This month: $0.36 (3 attempts, 330 tokens)",
        "By type: code $0.35, respond $0.01",
        "Top: #2 $0.35, #1 $0.01",
    ]


def test_streamed_usage_is_priced_until_a_result_line_gives_the_clis_own_cost():
    line = ('{"type":"assistant","message":{"id":"m1","model":"claude-sonnet-4-5","content":[],'
            '"usage":{"input_tokens":1000000,"output_tokens":1}}}')
    stream, _ = streamjson.step(streamjson.Stream(), line)
    stream, _ = streamjson.step(stream, line.replace('"output_tokens":1', '"output_tokens":2'))  # same message
    assert stream.cost_usd == 3.0 + 2 * 15 / 1e6 and stream.evidence().cost_estimated
    assert stream.evidence().tokens == TokenUsage(input=1000000, output=2)
    stream, _ = streamjson.step(stream, '{"type":"result","subtype":"success","total_cost_usd":2.5,'
                                        '"modelUsage":{"x":{"inputTokens":1000000,"outputTokens":40}}}')
    assert stream.cost_usd == 2.5 and not stream.evidence().cost_estimated
    assert stream.evidence().tokens == TokenUsage(input=1000000, output=40)


def test_unknown_models_are_priced_as_sonnet():
    assert spend.price("some-new-model") == spend.price("claude-sonnet-4-5")
    assert spend.estimate("claude-haiku-4-5", TokenUsage(input=1_000_000)) == 1.0
