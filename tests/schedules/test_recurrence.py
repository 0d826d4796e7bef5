"""The next-fire maths, from a table: intervals, month ends, and both DST changes."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from valor.recurrence import RecurrenceError, count_ticks, next_fire, parse_every, ticks

BERLIN = "Europe/Berlin"
NY = "America/New_York"


def at(tz: str, *parts: int, fold: int = 0) -> float:
    return datetime(*parts, tzinfo=ZoneInfo(tz), fold=fold).timestamp()


def local(t: float, tz: str) -> str:
    return datetime.fromtimestamp(t, ZoneInfo(tz)).isoformat()


TABLE = [
    # (cron, tz, after, the next four ticks in local time)
    ("0 9 * * *", "UTC", at("UTC", 2025, 1, 1, 8, 59), [
        "2025-01-01T09:00:00+00:00", "2025-01-02T09:00:00+00:00",
        "2025-01-03T09:00:00+00:00", "2025-01-04T09:00:00+00:00"]),
    # 02:30 does not exist on 30 March in Berlin: that day it fires when the gap ends, once.
    ("30 2 * * *", BERLIN, at(BERLIN, 2025, 3, 29, 12), [
        "2025-03-30T03:00:00+02:00", "2025-03-31T02:30:00+02:00",
        "2025-04-01T02:30:00+02:00", "2025-04-02T02:30:00+02:00"]),
    # 02:30 happens twice on 26 October in Berlin: it fires at the first, not again.
    ("30 2 * * *", BERLIN, at(BERLIN, 2025, 10, 25, 12), [
        "2025-10-26T02:30:00+02:00", "2025-10-27T02:30:00+01:00",
        "2025-10-28T02:30:00+01:00", "2025-10-29T02:30:00+01:00"]),
    # Hourly over the fall-back: each wall-clock hour once (02:00 is not repeated).
    ("0 * * * *", BERLIN, at(BERLIN, 2025, 10, 26, 0, 30), [
        "2025-10-26T01:00:00+02:00", "2025-10-26T02:00:00+02:00",
        "2025-10-26T03:00:00+01:00", "2025-10-26T04:00:00+01:00"]),
    # Half-hourly over the spring-forward: 02:00 and 02:30 both land at 03:00, which fires once.
    ("*/30 * * * *", NY, at(NY, 2025, 3, 9, 1, 10), [
        "2025-03-09T01:30:00-05:00", "2025-03-09T03:00:00-04:00",
        "2025-03-09T03:30:00-04:00", "2025-03-09T04:00:00-04:00"]),
    # Month ends: the 31st only in months that have one; the last of February in a leap year.
    ("0 9 31 * *", "UTC", at("UTC", 2025, 1, 31, 12), [
        "2025-03-31T09:00:00+00:00", "2025-05-31T09:00:00+00:00",
        "2025-07-31T09:00:00+00:00", "2025-08-31T09:00:00+00:00"]),
    ("0 0 29 2 *", "UTC", at("UTC", 2024, 3, 1), [
        "2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00",
        "2036-02-29T00:00:00+00:00", "2040-02-29T00:00:00+00:00"]),
    ("0 9 * * 1-5", BERLIN, at(BERLIN, 2025, 5, 30, 10), [  # Friday after 9: next is Monday
        "2025-06-02T09:00:00+02:00", "2025-06-03T09:00:00+02:00",
        "2025-06-04T09:00:00+02:00", "2025-06-05T09:00:00+02:00"]),
]


@pytest.mark.parametrize("cron,tz,after,expected", TABLE)
def test_cron_ticks_follow_the_wall_clock_once_each(cron, tz, after, expected):
    got = list(ticks(after, after + 365 * 86400 * 20, 4, cron=cron, tz=tz))
    assert [local(t, tz) for t in got] == expected


def test_a_tick_asked_for_from_inside_the_repeated_hour_is_not_fired_again():
    second_0215 = at(BERLIN, 2025, 10, 26, 2, 15, fold=1)
    assert local(next_fire(second_0215, cron="30 2 * * *", tz=BERLIN), BERLIN) == "2025-10-27T02:30:00+01:00"


@pytest.mark.parametrize("after,expected", [
    (99.0, 100.0),  # before the anchor: the anchor
    (100.0, 130.0),  # strictly after
    (129.999, 130.0),
    (1000.0, 1030.0),
])
def test_interval_ticks_are_anchor_plus_multiples(after, expected):
    assert next_fire(after, every=30.0, anchor=100.0) == expected


def test_an_interval_ignores_dst():
    start = at(BERLIN, 2025, 3, 30, 1, 0)
    assert next_fire(start, every=3600.0, anchor=start) - start == 3600.0


@pytest.mark.parametrize("after,until,n", [(100.0, 100.0, 0), (100.0, 130.0, 1), (100.0, 10_000.0, 330),
                                           (99.0, 100.0, 1)])
def test_ticks_are_counted_without_walking_an_interval(after, until, n):
    assert count_ticks(after, until, every=30.0, anchor=100.0) == n


@pytest.mark.parametrize("words,recurrence,rest", [
    ("30m check the deploy", {"every": 1800.0}, ["check", "the", "deploy"]),
    ("1s x", {"every": 1.0}, ["x"]),
    ("1d 09:00 code run the tests", {"cron": "0 9 * * *"}, ["code", "run", "the", "tests"]),
    ("1d 7:05 x", {"cron": "5 7 * * *"}, ["x"]),
    ("2d x", {"every": 172800.0}, ["x"]),
    ("1w mon 09:00 x", {"cron": "0 9 * * 1"}, ["x"]),
    ("weekdays 08:30 x", {"cron": "30 8 * * 1-5"}, ["x"]),
    ("cron 0 9 * * 1-5 x", {"cron": "0 9 * * 1-5"}, ["x"]),
])
def test_every_grammar(words, recurrence, rest):
    assert parse_every(words.split()) == (recurrence, rest)


@pytest.mark.parametrize("words,error", [
    ("", "say how often"),
    ("soon x", "not an interval"),
    ("0m x", "positive"),
    ("2d 09:00 x", "only \"1d HH:MM\""),
    ("weekdays x", "needs a time of day"),
    ("cron 0 9 * *", "five fields"),
    ("cron 61 9 * * * x", "not a cron expression"),
])
def test_every_grammar_errors_say_what_to_write(words, error):
    with pytest.raises(RecurrenceError, match=error):
        parse_every(words.split())


def test_an_unknown_zone_is_a_clear_error():
    with pytest.raises(RecurrenceError, match="unknown time zone"):
        next_fire(0.0, cron="0 9 * * *", tz="Mars/Olympus")
