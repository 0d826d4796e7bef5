"""Snapshots of the projection: restored and fed the tail, a projection equals the whole fold.

Events go through JSON first, as they do through the log, so every value is one
the log can hold; an event JSON cannot carry never reaches a fold.
"""

import zlib

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promises.projection import Projection
from schemas.events import (
    AttemptFailed,
    Cancelled,
    Created,
    Dispatched,
    Failed,
    Notified,
    Progress,
    RetryScheduled,
    Spawned,
    Started,
    Succeeded,
    decode_promise_event,
    encode,
)
from services.scheduler import snapshot
from services.scheduler.snapshot import FOLD, FORMAT, Header, SnapshotError

from .test_fold_properties import HISTORIES, random_history, ready_lists

CREATED = "2025-01-01 00:00:00+00:00"


def through_the_log(events) -> list:
    out = []
    for e in events:
        try:
            out.append(decode_promise_event(encode(e)))
        except msgspec.DecodeError:  # e.g. a NaN: JSON has none, so no log holds it
            pass
    return out


def fold(events, state: Projection | None = None, start: int = 1) -> Projection:
    state = state or Projection()
    for seq, e in enumerate(events, start):
        state.apply(e, seq)
    return state


def everything(s: Projection):
    """Every promise, in creation order, and every index and counter."""
    return (list(s.promises.items()), s.dependents, s.by_message, s.by_request,
            ready_lists(s), list(s.timed), list(s.deadlines), +s.in_flight, +s.key_in_flight, s.needs_decision,
            s.max_id, s.last_seq, s.applied, s.ignored, s.served, s.dispatches,
            {chat: list(ids) for chat, ids in s.unsettled.items()},
            list(s.awaiting), s.spend_by_chat, s.spend_by_user, s.spend_by_origin, s.budget_changes)


def round_trip(state: Projection) -> Projection:
    header, restored = snapshot.restore(snapshot.encode(state, CREATED, taken_at=1.0))
    assert header.last_seq == state.last_seq and header.promises == len(state.promises)
    return restored


def resumed_equals_whole(log, cut: int) -> None:
    restored = round_trip(fold(log[:cut]))
    assert everything(restored) == everything(fold(log[:cut]))
    assert everything(fold(log[cut:], restored, start=cut + 1)) == everything(fold(log))


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 10_000), st.data())
def test_a_snapshot_fed_the_tail_equals_the_whole_fold(seed, data):
    log = through_the_log(random_history(seed))
    resumed_equals_whole(log, data.draw(st.integers(0, len(log))))


@settings(max_examples=400, deadline=None)
@given(HISTORIES, st.data())
def test_a_snapshot_of_any_well_typed_history_fed_the_tail_equals_the_whole_fold(events, data):
    log = through_the_log(events)
    resumed_equals_whole(log, data.draw(st.integers(0, len(log))))


def busy_log() -> list:
    """Every index in use at the end: ready in two queues and several chats, timers, deadlines, keys, doomed,
    turns served and respond promises answering in order."""
    return through_the_log([
        Created(id=1, title="queued", priority=3),
        Created(id=2, title="later", not_before=500.0),
        Created(id=3, title="running", timeout=60.0, concurrency_key="repo:a", queue="code"),
        Dispatched(id=3, attempt=1), Started(at=10.0, id=3, attempt=1, executor="x"),
        Progress(id=3, attempt=1, text="half"),
        Created(id=4, title="flaky", max_attempts=3),
        Dispatched(id=4, attempt=1), AttemptFailed(id=4, attempt=1, error="boom", retryable=True),
        RetryScheduled(id=4, next_attempt=2, not_before=77.0),
        Created(id=5, title="failing"), Dispatched(id=5, attempt=1), AttemptFailed(id=5, attempt=1, error="x"),
        Created(id=6, title="parent"), Created(id=7, title="child", depends_on=[6], request_id="r1", request_index=1),
        Created(id=8, title="waits for a later parent", depends_on=[6], not_before=900.0),
        Failed(id=6, reason="gave up"),
        Created(id=9, title="doomed", depends_on=[6]),
        Created(id=10, title="answer", task="respond", chat_id=42, message_id=7, queue="respond"),
        Dispatched(id=10, attempt=1), Started(id=10, attempt=1),
        Succeeded(id=10, attempt=1, result={"reply": "ok", "promises": [{"name": "a"}]}),
        Created(id=11, title="spawned", depends_on=[12]),  # a parent that does not exist yet
        Created(id=12, title="late parent"), Dispatched(id=12, attempt=1), Started(id=12, attempt=1),
        Succeeded(id=12, attempt=1, result=[1, 2.5, None]),
        Created(id=13, title="dispatched", queue="code", concurrency_key="repo:a"), Dispatched(id=13, attempt=1),
        Created(id=14, title="cancelled"), Cancelled(id=14, reason="no", by="user"),
        Spawned(id=10, children={"a": 15}), Notified(id=10, kind="reply", chat_id=42),
        Created(id=15, title="big", input=2 ** 70, not_before=5.0, queue="code"),
        # A doomed promise whose unknown parent appears and succeeds: still not timed.
        Created(id=16, title="doomed, then free", depends_on=[17], not_before=50.0),
        Created(id=17, title="its parent"), Dispatched(id=17, attempt=1), Succeeded(id=17, attempt=1),
        # Dispatched again after a timed-out attempt: no deadline until it starts.
        Created(id=18, title="slow", timeout=5.0, max_attempts=2), Dispatched(id=18, attempt=1),
        Started(at=20.0, id=18, attempt=1), AttemptFailed(id=18, attempt=1, error="timed out"),
        RetryScheduled(id=18, next_attempt=2, not_before=30.0), Dispatched(id=18, attempt=2),
        # The same message twice: the first respond promise answers it.
        Created(id=19, title="answer again", task="respond", chat_id=42, message_id=7, queue="respond"),
        # Another chat: its first message is being answered, its second waits for it, and a task of its own.
        Created(id=20, title="first", task="respond", chat_id=43, message_id=1, queue="respond"),
        Dispatched(id=20, attempt=1), Started(id=20, attempt=1),
        Created(id=21, title="second", task="respond", chat_id=43, message_id=2, queue="respond"),
        Created(id=22, title="its task", chat_id=43, parent_id=20), Dispatched(id=22, attempt=1),
        Created(id=23, title="its next task", chat_id=43, parent_id=20, priority=2),
    ])


def test_every_index_survives_a_snapshot():
    log = busy_log()
    state = fold(log)
    assert state.ready and state.timed and state.deadlines and +state.in_flight and +state.key_in_flight
    assert state.needs_decision and state.by_message and state.by_request and state.dependents
    assert len(state.ready["default"]) == 2 and state.served["default"].keys() == {None, 43}
    assert {chat: list(ids) for chat, ids in state.unsettled.items()} == {42: [19], 43: [20, 21]}
    for cut in range(len(log) + 1):
        resumed_equals_whole(log, cut)


def test_an_integer_past_64_bits_is_kept_by_storing_json():
    state = fold(through_the_log([Created(id=1, title="big", input={"n": 2 ** 70})]))
    data = snapshot.encode(state, CREATED, taken_at=1.0)
    assert snapshot.read_header(data).codec == "json"
    assert round_trip(state).promises[1].spec.input == {"n": 2 ** 70}
    assert snapshot.read_header(snapshot.encode(fold(busy_log()[:3]), CREATED, 1.0)).codec == "msgpack"


def test_the_header_line_tells_what_the_snapshot_holds():
    data = snapshot.encode(fold(busy_log()), CREATED, taken_at=123.0)
    header = msgspec.json.decode(data.split(b"\n", 1)[0])
    assert header == {"format": FORMAT, "fold": FOLD, "codec": "json", "stream_created": CREATED, "last_seq": 52,
                      "max_id": 23, "applied": 52, "ignored": 0, "promises": 23, "taken_at": 123.0}


def header_line(**fields) -> bytes:
    base = dict(format=FORMAT, fold=FOLD, codec="msgpack", stream_created=CREATED, last_seq=1, promises=1)
    return msgspec.json.encode(Header(**{**base, **fields})) + b"\n"


@pytest.mark.parametrize("data, reason", [
    (b"", "no header line: not a Valor snapshot"),
    (b"\x00" * 5000, "no header line: not a Valor snapshot"),
    (b"garbage\n", "unreadable header: JSON is malformed: invalid character (byte 0)"),
    (header_line(format=FORMAT + 1), f"format {FORMAT + 1}, this scheduler reads format {FORMAT}"),
    (header_line(fold="0123456789abcdef"),
     f"written by another version of the fold (0123456789abcdef, this one is {FOLD})"),
    (header_line(codec="zip"), "unknown codec 'zip'"),
    (header_line() + b"\xc1", "unreadable body: Error -5 while decompressing data: incomplete or truncated stream"),
    (header_line() + zlib.compress(b"\xc1"),
     "unreadable body: MessagePack data is malformed: invalid opcode '\\xc1' (byte 0)"),
    (header_line() + zlib.compress(msgspec.msgpack.encode([[], []])), "0 promises, the header says 1"),
])
def test_a_snapshot_that_cannot_be_restored_says_why(data, reason):
    with pytest.raises(SnapshotError) as exc:
        snapshot.restore(data)
    assert str(exc.value) == reason


def test_a_cut_snapshot_is_refused():
    data = snapshot.encode(fold(busy_log()[:10]), CREATED, taken_at=1.0)
    with pytest.raises(SnapshotError, match="^unreadable body: "):
        snapshot.restore(data[:-20])


@pytest.mark.parametrize("created, first_seq, last_seq, reason", [
    (CREATED, 1, 100, None),
    (CREATED, 1, 50, None),  # nothing new since the snapshot
    (CREATED, 51, 100, None),  # old events were removed, none the snapshot lacks
    (CREATED, 0, 0, "it is at seq 50, past the end of the log (seq 0): the log was cut"),
    (CREATED, 1, 49, "it is at seq 50, past the end of the log (seq 49): the log was cut"),
    (CREATED, 52, 100, "the log now starts at seq 52: events after the snapshot's seq 50 are gone"),
    ("2025-02-02 00:00:00+00:00", 1, 100,
     f"it folded a stream created at {CREATED}, this one was created at 2025-02-02 00:00:00+00:00"),
])
def test_a_snapshot_is_used_only_on_the_log_it_folded(created, first_seq, last_seq, reason):
    header = Header(format=FORMAT, fold=FOLD, stream_created=CREATED, last_seq=50)
    assert snapshot.unusable(header, created, first_seq, last_seq) == reason


@pytest.mark.parametrize("events_since, seconds_since, due", [
    (50_000, 31.0, True),
    (49_999, 1e9, False),  # not enough new events
    (10 ** 6, 29.0, False),  # too soon after the last one
    (10 ** 6, float("inf"), True),  # never took one yet
])
def test_a_snapshot_is_due_after_enough_events_and_not_too_often(events_since, seconds_since, due):
    assert snapshot.due(events_since, seconds_since, every=50_000, min_interval=30.0) is due
    assert snapshot.due(events_since, seconds_since, every=0, min_interval=30.0) is False  # switched off
