"""The wire contract: committed JSON Schema, round trips and the evolution rules."""

from __future__ import annotations

import msgspec
import pytest

from schemas import commands, events, export
from schemas.commands import (
    AnyCommand,
    Approve,
    Cancel,
    CommandReply,
    ExecutorHeartbeat,
    NewPromise,
    Reject,
    RespondCommand,
    RespondResult,
    Retry,
    Schedule,
    ScheduleChange,
    Submit,
    WorkItem,
)
from schemas.events import (
    Approved,
    AttemptFailed,
    AttemptStopped,
    BudgetAdjusted,
    Cancelled,
    Created,
    Dispatched,
    Evidence,
    Failed,
    InputEdited,
    InstructionsAdded,
    InstructionsDelivered,
    MessageReceived,
    NoticeFailed,
    NoticeIntended,
    Notified,
    Progress,
    PromiseEvent,
    RequestDeleted,
    RetryScheduled,
    Spawned,
    Started,
    Succeeded,
    TokenUsage,
)

# One example of every promise event, with its optional fields set so they travel too.
PROMISE_EVENTS = [
    Created(
        id=12,
        title="review",
        task="echo",
        input={"x": 1},
        depends_on=[10, 11],
        priority=2,
        queue="code",
        concurrency_key="repo:valor",
        concurrency_limit=1,
        max_attempts=3,
        timeout=30.0,
        not_before=1700000000.5,
        chat_id=42,
        message_id=7,
        parent_id=9,
        name="review",
        request_id="r-1",
        request_index=1,
        awaits_approval="4 steps, more than 3",
        approve_by=1700086400.0,
        estimate_usd=0.42,
        estimate_runs=5,
        at=1700000000.0,
    ),
    Approved(id=12, by="respond #9", reason="approved in chat by Ana", at=0.5),
    BudgetAdjusted(id=9, scope="chat", target=42, period="day", add=5.0, by="Ana (123)",
                   request_id="budget:9:0:day", at=0.7),
    Dispatched(id=12, attempt=1, queue="code", at=1.0),
    Started(id=12, attempt=1, executor="executor-0", delivery=2, at=2.0),
    Progress(id=12, attempt=1, text="half way", fraction=0.5, at=3.0),
    Succeeded(id=12, attempt=1, result={"ok": [1, 2]}, duration=1.25, at=4.0),
    AttemptFailed(id=12, attempt=1, error="boom", retryable=False, duration=0.5, at=5.0),
    AttemptStopped(id=12, attempt=2, reason="the promise was cancelled", duration=0.7, at=5.5,
                   evidence=Evidence(cost_usd=0.012, cost_estimated=True, tokens=TokenUsage(input=900, output=12))),
    RetryScheduled(id=12, next_attempt=2, not_before=10.0, delay=5.0, at=5.0),
    Failed(id=12, reason="gave up", attempt=3, at=6.0),
    Cancelled(id=13, reason="#12 failed", by="scheduler", cause_id=12, at=7.0),
    Spawned(id=9, children={"review": 12, "fix": 13}, at=8.0),
    Notified(id=12, kind="terminal", chat_id=42, telegram_message_id=99, at=9.0),
    NoticeIntended(id=12, kind="terminal", chat_id=42, reply_to=7, parts=["0123456789abcdef"], at=9.0),
    NoticeFailed(id=12, kind="terminal", chat_id=42, reason="UserIsBlockedError", at=9.0),
    InstructionsAdded(id=12, text="use pytest", request_id="respond:9:0", by="respond #9", message_id=8, at=10.0),
    InstructionsDelivered(id=12, attempt=1, request_id="respond:9:0", at=11.0),
    RequestDeleted(id=12, message_id=7, cancelled=True, at=11.0),
    InputEdited(id=12, message_id=7, edited_at=10.0, applied=True, input={"text": "/do y"}, title="/do y",
                text="/do y", at=11.0),
    events.ScheduleCreated(id=20, cron="0 9 * * 1-5", tz="Europe/Berlin", anchor=12.0, title="run the tests",
                           task="code", input="run the tests", queue="code", priority=3, max_cost=0.5, chat_id=42,
                           message_id=7, missed="catch_up_one", overlap="queue", request_id="tg:42:7:every",
                           by="chat", at=12.0),
    events.SchedulePaused(id=20, by="chat", at=13.0),
    events.ScheduleResumed(id=20, by="cli", at=14.0),
    events.ScheduleDeleted(id=20, by="cli", at=15.0),
    events.TicksSkipped(id=20, first=100.0, last=130.0, count=4, reason="overlap", at=16.0),
]

COMMANDS = [
    Submit(
        request_id="r-1",
        reply_to="_INBOX.x",
        tasks=[
            NewPromise(title="a", type="echo", input=[1], name="a"),
            NewPromise(title="b", after=["a"], priority=1),
        ],
    ),
    Cancel(request_id="r-2", id=12, reason="no longer needed", by="operator"),
    Retry(request_id="r-3", id=12),
    Approve(request_id="r-4", id=12, reason="approved by the operator"),
    Reject(request_id="r-5", id=12, reason="plan rejected by the operator: too big"),
    Schedule(request_id="r-6", task=NewPromise(title="ping", type="echo", input="hi"), every=1800.0,
             tz="Europe/Berlin", missed="catch_up_one", overlap="run", chat_id=42, message_id=7),
    ScheduleChange(request_id="r-7", id=20, verb="pause", chat_id=42),
]


def test_committed_json_schemas_are_current(tmp_path):
    export.write(tmp_path)
    fresh = {p.name: p.read_text() for p in tmp_path.glob("*.json")}
    committed = {p.name: p.read_text() for p in export.DEFAULT_DIR.glob("*.json")}
    stale = sorted(n for n in fresh.keys() | committed.keys() if fresh.get(n) != committed.get(n))
    assert not stale, f"schemas/json is stale: run make schemas (differs: {', '.join(stale)})"


def test_export_is_deterministic():
    assert export.schemas() == export.schemas()


def test_every_promise_event_type_has_an_example():
    assert {type(e) for e in PROMISE_EVENTS} == set(PromiseEvent.__args__)


@pytest.mark.parametrize("event", PROMISE_EVENTS, ids=lambda e: type(e).__name__)
def test_every_promise_event_round_trips(event):
    data = events.encode(event)
    assert msgspec.json.decode(data)["type"] == events.EVENT_NAMES[type(event)]
    assert events.decode_promise_event(data) == event


def test_message_received_round_trips():
    msg = MessageReceived(
        chat_id=-100123,
        message_id=7,
        sender_id=5,
        sender_name="Ada",
        text="review #12 please",
        reply_to=6,
        sent_at=1700000000.0,
        chat_kind="group",
        mentioned=True,
        caught_up=True,
        attachments=[
            events.Attachment(name="report.csv", path="inbox/-100123/7-report.csv", size=30, mime_type="text/csv"),
            events.Attachment(name="dump.sql", size=1 << 30, skipped="too big: 1.0 GB, the limit is 20.0 MB"),
        ],
        at=1.0,
    )
    data = events.encode(msg)
    assert msgspec.json.decode(data)["type"] == "message.received"
    assert events.decode_message(data) == msg


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: type(c).__name__)
def test_every_command_round_trips(command):
    assert commands.command_decoder.decode(msgspec.json.encode(command)) == command


@pytest.mark.parametrize(
    "record, decoder",
    [
        (CommandReply(ok=True, ids={"a": 1, "b": 2}), commands.reply_decoder),
        (CommandReply(ok=False, error="cycle: a -> b -> a"), commands.reply_decoder),
        (
            WorkItem(
                id=12,
                attempt=2,
                task="echo",
                input={"x": 1},
                deps={"10": "r"},
                timeout=5.0,
                chat_id=1,
                message_id=2,
            ),
            commands.work_decoder,
        ),
        (
            ExecutorHeartbeat(
                executor="executor-0", queues=["default"], slots=4, busy=1, host="h", pid=9, at=1.0
            ),
            commands.heartbeat_decoder,
        ),
        (
            RespondResult(
                reply="on it",
                promises=[NewPromise(title="x", name="x")],
                commands=[RespondCommand(verb="cancel", id=12)],
            ),
            msgspec.json.Decoder(RespondResult),
        ),
    ],
    ids=lambda v: type(v).__name__,
)
def test_every_record_round_trips(record, decoder):
    assert decoder.decode(msgspec.json.encode(record)) == record


def test_an_unknown_event_type_is_a_validation_error():
    with pytest.raises(msgspec.ValidationError, match=r"Invalid value 'exploded' - at `\$.type`"):
        events.decode_promise_event(b'{"type": "exploded", "id": 1}')


def test_an_unknown_command_type_is_a_validation_error():
    with pytest.raises(msgspec.ValidationError, match=r"Invalid value 'format_disk' - at `\$.type`"):
        commands.command_decoder.decode(b'{"type": "format_disk", "request_id": "r"}')


def test_readers_ignore_fields_they_do_not_know():
    # A newer writer added a field: older readers decode the rest unchanged.
    data = b'{"type": "succeeded", "id": 3, "attempt": 1, "result": 5, "cost_usd": 0.02, "at": 1.0}'
    assert events.decode_promise_event(data) == Succeeded(id=3, attempt=1, result=5, at=1.0)
    msg = b'{"type": "message.received", "chat_id": 1, "message_id": 2, "thread_id": 77}'
    assert events.decode_message(msg) == MessageReceived(chat_id=1, message_id=2)


def test_records_written_before_a_field_existed_get_its_default():
    created = events.decode_promise_event(b'{"type": "created", "id": 1, "title": "old"}')
    assert (created.task, created.priority, created.queue, created.max_attempts) == ("noop", 5, "default", 1)


def test_a_field_of_the_wrong_type_is_rejected_with_its_path():
    with pytest.raises(msgspec.ValidationError, match=r"Expected `int`, got `str` - at `\$.id`"):
        events.decode_promise_event(b'{"type": "dispatched", "id": "12", "attempt": 1}')


def test_the_command_union_is_exported_whole():
    doc = msgspec.json.decode(export.schemas()["command.json"])
    assert {"Submit", "Cancel", "Retry", "Approve", "Reject", "Schedule", "ScheduleChange"} <= set(doc["$defs"])
    assert AnyCommand.__args__ == (Submit, Cancel, Retry, Approve, Reject, Schedule, ScheduleChange)


# --- a respond result, read once (decision 58) -------------------------------------------------------


@pytest.mark.parametrize("recorded, answer, asks", [
    ({"reply": "hi"}, commands.RespondResult(reply="hi"), False),
    ({"reply": "ok", "commands": [{"verb": "cancel", "id": 3}]},
     commands.RespondResult(reply="ok", commands=[commands.RespondCommand(verb="cancel", id=3)]), True),
    ({"promises": [{"type": "echo", "input": "x"}]},
     commands.RespondResult(promises=[commands.NewPromise(type="echo", input="x")]), True),
    ({"reply": "ok", "commands": [{"verb": "explode", "id": 3}]}, None, True),  # unreadable: spawned says why
    ({"reply": 7}, None, True),
    (None, None, False),  # no object: never an answer, nothing to spawn
    ("just text", None, False),
])
def test_a_respond_result_is_read_once_into_its_struct(recorded, answer, asks):
    assert commands.read_answer(recorded) == (answer, asks)
    assert commands.asks_for_anything(recorded) is asks


def test_an_unreadable_respond_result_says_which_field():
    with pytest.raises(commands.UnreadableResult, match=r"commands\[0\]\.verb"):
        commands.read_respond_result({"commands": [{"verb": "explode", "id": 3}]})


def test_closed_words_are_refused_at_the_boundary():
    with pytest.raises(msgspec.ValidationError, match="verb"):
        msgspec.json.decode(b'{"type":"schedule_change","request_id":"r","id":1,"verb":"explode"}',
                            type=commands.AnyCommand)
    with pytest.raises(msgspec.ValidationError, match="chat_kind"):
        msgspec.convert({"type": "message.received", "chat_id": 1, "message_id": 2, "chat_kind": "forum"},
                        events.MessageReceived)
