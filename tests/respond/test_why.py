"""``/why``: a promise's story from a recorded event list (pure)."""

from promises.story import elapsed, explain
from schemas.events import Cancelled, Created, Dispatched, Progress, Spawned, Started, Succeeded

from .helpers import CHAT, cancelled_by_failed_dependency, failed_after_retries


def test_failed_after_retries():
    assert explain(failed_after_retries(12)) == "\n".join([
        '#12 fail "flaky job": failed: connection refused: db:5432 (after 3 attempts)',
        "+0.0s created by #10 as step 'job'; up to 3 attempts",
        "+0.2s attempt 1 started on exec-1",
        "+0.5s attempt 1 failed: connection refused: db:5432",
        "+0.6s retry scheduled: attempt 2 in 1.0s",
        "+1.7s attempt 2 started on exec-2",
        "+2.0s attempt 2 failed: connection refused: db:5432",
        "+2.1s retry scheduled: attempt 3 in 2.0s",
        "+4.2s attempt 3 started on exec-1",
        "+4.5s attempt 3 failed: connection refused: db:5432",
        "+4.6s failed: connection refused: db:5432 (after 3 attempts)",
    ])


def test_cancelled_because_a_dependency_failed():
    assert explain(cancelled_by_failed_dependency(13, 12)) == "\n".join([
        '#13 code "run the tests": cancelled before it started: '
        "dependency #12 failed: connection refused: db:5432 (after 3 attempts)",
        "+0.0s created by #10 as step 'run', after #12",
        "+4.6s cancelled by the scheduler (because #12 ended): "
        "dependency #12 failed: connection refused: db:5432 (after 3 attempts)",
    ])


def test_cancelled_while_running_by_a_chat_command():
    events = [
        Created(at=0.0, id=20, title="two", task="sleep", chat_id=CHAT),
        Dispatched(at=0.1, id=20, attempt=1),
        Started(at=0.2, id=20, attempt=1, executor="exec-1"),
        Progress(at=0.7, id=20, attempt=1, text="sleeping, 29.5s left"),
        Cancelled(at=3.0, id=20, by="respond #21", reason="not needed"),
        Succeeded(at=3.1, id=20, attempt=1, result={"slept": 30}),  # too late: the fold ignores it
    ]
    assert explain(events) == "\n".join([
        '#20 sleep "two": cancelled after 1 attempt: not needed',
        "+0.0s created",
        "+0.2s attempt 1 started on exec-1",
        "+3.0s cancelled by respond #21: not needed",
    ])


def test_a_respond_promise_tells_its_reply_and_what_it_promised():
    events = [
        Created(at=0.0, id=1, title="answer", task="respond", chat_id=CHAT, message_id=5),
        Dispatched(at=0.1, id=1, attempt=1),
        Started(at=0.2, id=1, attempt=1, executor="e"),
        Succeeded(at=0.4, id=1, attempt=1, duration=0.2,
                  result={"reply": "Planned 2 tasks: a; b (after a)", "promises": [{"name": "a"}, {"name": "b"}]}),
        Spawned(at=0.5, id=1, children={"a": 2, "b": 3}),
    ]
    assert explain(events).splitlines()[-2:] == [
        '+0.4s succeeded on attempt 1 in 0.2s: replied "Planned 2 tasks: a; b (after a)"',
        "+0.5s promised #2 a, #3 b",
    ]


def test_a_running_promise_shows_its_last_progress():
    events = [Created(at=0.0, id=4, title="t", task="sleep", max_attempts=2), Dispatched(at=0.0, id=4, attempt=1),
              Started(at=0.1, id=4, attempt=1), Progress(at=0.5, id=4, attempt=1, text="halfway")]
    assert explain(events).splitlines()[0] == '#4 sleep "t": running, attempt 1 of 2: halfway'


def test_no_events_no_story():
    assert explain([]) == "I have no record of that promise."


def test_elapsed_units():
    assert [elapsed(s) for s in (0, 59.94, 61, 3725, 90000)] == ["+0.0s", "+59.9s", "+1m01s", "+1h02m", "+1d01h"]


def test_a_result_is_told_as_a_reply_because_its_promise_is_a_respond_promise_not_by_its_keys():
    """Decision 58: the respond result is read as its Struct; no other result is guessed to be one."""
    def told(task, result):
        events = [Created(at=0.0, id=1, title="t", task=task, chat_id=CHAT), Dispatched(at=0.1, id=1, attempt=1),
                  Started(at=0.2, id=1, attempt=1), Succeeded(at=0.4, id=1, attempt=1, duration=0.2, result=result)]
        return explain(events).splitlines()[-1]

    answer = {"reply": "Every morning at 9.", "schedules": [{"every": 86400.0, "task": {"type": "echo", "input": "hi"}}]}
    assert told("respond", answer) == '+0.4s succeeded on attempt 1 in 0.2s: replied "Every morning at 9."'
    assert told("echo", {"reply": "an echo"}) == '+0.4s succeeded on attempt 1 in 0.2s: {"reply": "an echo"}'
    assert told("respond", {"reply": 3}) == '+0.4s succeeded on attempt 1 in 0.2s: {"reply": 3}'  # unreadable
