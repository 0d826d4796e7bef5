"""The golden PROMISES logs, folded: what the projection, the notifier's board and the story-teller make of them.

Pure: each ``*.jsonl`` here is a recorded stream (``tests/golden/record.py`` says
how it is made and how to make it again).  The expectations are the reviewed
readings of those logs; a change in the fold, the notices or the words shows
up here as a failing line to look at.
"""

from __future__ import annotations

import math

import pytest

from promises import story
from promises.projection import Projection
from promises.states import State
from schemas.events import PromiseEvent, decode_promise_event
from services.executor.respond.commands import status_line
from services.notifier.board import Board
from services.notifier.plan import Edit, React, Send, due
from valor import render

from . import record


def load(name: str) -> list[PromiseEvent]:
    return [decode_promise_event(line) for line in record.path(name).read_bytes().splitlines()]


def folded(events: list[PromiseEvent]) -> tuple[Projection, Board]:
    state, board = Projection(), Board()
    for seq, event in enumerate(events, 1):
        state.apply(event, seq)
        board.apply(event, seq)
    return state, board


def notices(board: Board, now: float) -> list[tuple]:
    """Everything the notifier owes the chat once the log is read, nothing sent yet: what it would send."""
    out: list[tuple] = []
    for item in board.items.values():
        for action in due(board, item, now, math.inf):
            match action:
                case Send(id=pid, kind=kind, text=text):
                    out.append((pid, kind, text))
                case React(id=pid, kind=kind, emoji=emoji):
                    out.append((pid, kind, emoji))
                case Edit():
                    raise AssertionError("nothing was sent, so nothing can be edited")
    return out


def of(events: list[PromiseEvent], pid: int) -> list[PromiseEvent]:
    return [e for e in events if getattr(e, "id", None) == pid]


def why(events: list[PromiseEvent], pid: int) -> list[str]:
    """``/why``'s lines for ``pid``: its headline, then its events."""
    return story.explain(of(events, pid)).splitlines()


@pytest.mark.parametrize("name", sorted(record.SCENARIOS))
def test_the_committed_log_is_what_the_scenario_records_today(name):
    """The scheduler still decides what the log says; after a deliberate change: ``make golden``, review the diff."""
    assert record.encode(record.SCENARIOS[name]()) == record.path(name).read_bytes(), \
        f"tests/golden/{name}.jsonl is stale: run `make golden` and review the diff"


def test_a_plan_whose_second_step_fails_cancels_the_third():
    events = load("plan_cascade")
    state, board = folded(events)
    assert (state.applied, state.ignored) == (len(events), 0)
    respond, setup, write, run = (state.promises[i] for i in (1, 2, 3, 4))
    assert respond.children == {"setup": 2, "write": 3, "run": 4}
    assert [(p.state, p.attempt) for p in (setup, write, run)] == [
        (State.SUCCEEDED, 1), (State.FAILED, 1), (State.CANCELLED, 0)]
    assert (run.cancelled_by, run.cause_id) == ("scheduler", 3)
    assert state.counts() == {State.SUCCEEDED: 2, State.FAILED: 1, State.CANCELLED: 1}
    assert not state.needs_decision and not state.in_flight["default"]

    steps = ("✅ 1. setup #2 — 2.0s · ready\n"
             "❌ 2. write #3 — failed after 1.5s: boom (after 1 attempt)\n"
             "🚫 3. run #4 — cancelled: dependency #3 failed: boom (after 1 attempt)\n")
    hint = 'Reply "show N" (or a step\'s name) to this message for that step\'s full result.'
    assert notices(board, events[-1].at) == [
        (1, "terminal", "Planned 3 tasks: setup; write (after setup); run (after write)\n\n" + steps + hint),
        (1, "final", "❌ The plan ended in 3.7s: 1 succeeded, 1 failed, 1 cancelled.\n\n" + steps + "\n" + hint),
        (1, "reaction_end", "❌"),
    ]

    assert why(events, 3) == [
        '#3 fail "write": failed: boom (after 1 attempt)',
        "+0.0s created by #1 as step 'write', after #2",
        "+2.2s attempt 1 started on exec-1",
        "+3.7s attempt 1 failed: boom",
        "+3.7s failed: boom (after 1 attempt)",
    ]
    assert why(events, 4) == [
        '#4 echo "run": cancelled before it started: dependency #3 failed: boom (after 1 attempt)',
        "+0.0s created by #1 as step 'run', after #3",
        "+3.7s cancelled by the scheduler (because #3 ended): dependency #3 failed: boom (after 1 attempt)",
    ]
    assert why(events, 1)[-1] == "+0.5s promised #2 setup, #3 write, #4 run"
    # /status and `valor list` name the same states in the same words as /why.
    assert status_line(run) == why(events, 4)[0]
    assert render.list_text([setup, write, run], now=events[-1].at).splitlines()[1:] == [
        '#2  succeeded  echo  1    setup  4s',
        '#3  failed     fail  1    write  4s',
        '#4  cancelled  echo  0    run    4s',
    ]


def test_a_failed_attempt_is_retried_and_the_retry_succeeds():
    events = load("retry")
    state, board = folded(events)
    assert (state.applied, state.ignored) == (len(events), 0)
    fetch = state.promises[2]
    assert (fetch.state, fetch.attempt, fetch.spec.max_attempts) == (State.SUCCEEDED, 2, 3)
    assert fetch.result == {"text": "report.pdf, 12 pages"} and fetch.error is None
    assert not state.timed and not state.needs_decision

    assert notices(board, events[-1].at) == [
        (1, "terminal", "Fetching it.\nPromised: #2 fetch the report"),
        (1, "reaction_end", "✅"),
        (2, "terminal", "✅ #2 fetch the report — succeeded in 2.0s\n\nreport.pdf, 12 pages"),
    ]

    told = why(events, 2)
    assert told == [
        '#2 shell "fetch the report": succeeded on attempt 2',
        "+0.0s created by #1; up to 3 attempts",
        "+0.1s attempt 1 started on exec-1",
        "+0.4s attempt 1 failed: connection refused",
        "+0.4s retry scheduled: attempt 2 in 0.5s",
        "+1.4s attempt 2 started on exec-1",
        "+3.4s succeeded on attempt 2 in 2.0s: report.pdf, 12 pages",
    ]
    # `valor show` tells the same events in the same words, the bookkeeping too, at millisecond offsets.
    shown = story.timeline(of(events, 2))
    assert [line.split(" ", 1)[1] for line in shown if "dispatched" not in line and "progress" not in line] == [
        line.split(" ", 1)[1] for line in told[1:]]
    assert "+1.900s attempt 2 progress (50%): downloading" in shown
    assert why(events, 1)[-1] == "+0.5s promised #2"


def test_a_running_task_cancelled_from_the_chat():
    events = load("cancel")
    state, board = folded(events)
    assert (state.applied, state.ignored) == (len(events), 0)
    sleep, cancel = state.promises[2], state.promises[3]
    assert (sleep.state, sleep.attempt, sleep.cancelled_by) == (State.CANCELLED, 1, "respond #3")
    assert cancel.result["commands"][0] | {"text": ""} == {
        "verb": "cancel", "id": 2, "reason": "cancelled in chat by Ana", "text": ""}
    assert not state.in_flight["default"] and not state.unsettled

    assert notices(board, events[-1].at) == [
        (1, "terminal", "Promised a sleep task: 300\nPromised: #2 sleep"),
        (1, "reaction_end", "❌"),
        (2, "terminal", "🚫 #2 300 — cancelled: cancelled in chat by Ana"),
        (3, "terminal", 'Cancelling #2 sleep "300".'),
        (3, "reaction_end", "✅"),
    ]

    assert why(events, 2) == [
        '#2 sleep "300": cancelled after 1 attempt: cancelled in chat by Ana',
        "+0.0s created by #1 as step 'sleep'",
        "+0.1s attempt 1 started on exec-1",
        "+5.6s cancelled by respond #3: cancelled in chat by Ana",
    ]
    assert status_line(sleep) == why(events, 2)[0]
