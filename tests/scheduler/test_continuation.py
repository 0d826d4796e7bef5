"""Continuing a Claude Code promise: which session it resumes, recorded once at creation; pure."""

import pytest

from promises.continuation import CannotContinue, session_of, session_to_resume
from promises.projection import Projection
from schemas.commands import NewPromise, Submit
from schemas.events import AttemptFailed, Cancelled, Created, Dispatched, Failed, Started, Succeeded
from services.scheduler import intake
from services.scheduler.effects import Publish
from valor.config import DEFAULT

from .sim import Sim
from .test_snapshot import everything, fold, round_trip

CHAT, OTHER = 7, 8
SESSION = "6f1c2d9e-0000-4000-8000-000000000001"
CLAUDE_RESULT = {"text": "Fixed the login test.", "cost_usd": 0.01, "session_id": SESSION, "turns": 3,
                 "duration_ms": 900}


def created(pid: int, task: str = "code", chat_id: int | None = CHAT) -> Created:
    return Created(at=1.0, id=pid, title=f"task {pid}", task=task, queue="code", chat_id=chat_id)


def ran(pid: int) -> list:
    return [Dispatched(at=2.0, id=pid, attempt=1), Started(at=2.1, id=pid, attempt=1)]


def succeeded(pid: int, result=None) -> list:
    return ran(pid) + [Succeeded(at=3.0, id=pid, attempt=1, result=CLAUDE_RESULT if result is None else result)]


HISTORIES = {
    "succeeded": [created(1)] + succeeded(1),
    "in another chat": [created(1, chat_id=OTHER)] + succeeded(1),
    "from the CLI": [created(1, chat_id=None)] + succeeded(1),
    "a shell task": [created(1, task="shell")] + succeeded(1, {"exit_code": 0, "session_id": SESSION}),
    "a review": [created(1, task="code_review")] + succeeded(1),
    "queued": [created(1)],
    "running": [created(1)] + ran(1),
    "retrying": [created(1)] + ran(1) + [AttemptFailed(at=3.0, id=1, attempt=1, error="boom")],
    "failed": [created(1)] + ran(1) + [AttemptFailed(at=3.0, id=1, attempt=1, error="boom", retryable=False),
                                       Failed(at=3.1, id=1, reason="boom")],
    "cancelled": [created(1)] + ran(1) + [Cancelled(at=3.0, id=1, reason="stop")],
    "succeeded without a session": [created(1)] + succeeded(1, {"text": "done"}),
    "succeeded with a non-text session": [created(1)] + succeeded(1, {"text": "done", "session_id": 42}),
}


@pytest.mark.parametrize("history, pid, chat_id, type_, expected", [
    ("succeeded", 1, CHAT, "code", SESSION),
    ("succeeded", 1, CHAT, None, SESSION),
    ("from the CLI", 1, None, "code", SESSION),
    ("a review", 1, CHAT, "code_review", SESSION),
    ("succeeded", 9, CHAT, "code", "there is no promise #9"),
    ("in another chat", 1, CHAT, "code", "#1 belongs to another chat"),
    ("from the CLI", 1, CHAT, "code", "#1 belongs to another chat"),
    ("succeeded", 1, None, "code", "#1 belongs to another chat"),
    ("a shell task", 1, CHAT, "shell", "#1 is a shell task; only Claude Code tasks "
                                       "(analysis, code, code_review, search) have a session to continue"),
    ("succeeded", 1, CHAT, "analysis", "a continuation of #1 must be a code task like it, not analysis"),
    ("a review", 1, CHAT, "code", "a continuation of #1 must be a code_review task like it, not code"),
    ("queued", 1, CHAT, "code", "#1 is still queued; it can be continued once it has ended"),
    ("running", 1, CHAT, "code", "#1 is still running; it can be continued once it has ended"),
    ("retrying", 1, CHAT, "code", "#1 is still retrying; it can be continued once it has ended"),
    ("failed", 1, CHAT, "code", "#1 failed without a recorded Claude Code session, so there is nothing to resume"),
    ("cancelled", 1, CHAT, "code",
     "#1 was cancelled without a recorded Claude Code session, so there is nothing to resume"),
    ("succeeded without a session", 1, CHAT, "code",
     "#1 succeeded without a recorded Claude Code session, so there is nothing to resume"),
    ("succeeded with a non-text session", 1, CHAT, "code",
     "#1 succeeded without a recorded Claude Code session, so there is nothing to resume"),
])
def test_the_session_to_resume_or_why_there_is_none(history, pid, chat_id, type_, expected):
    state = fold(HISTORIES[history])
    target = state.promises.get(pid)
    if expected == SESSION:
        assert session_to_resume(target, pid, chat_id, type_, DEFAULT) == SESSION
    else:
        with pytest.raises(CannotContinue) as refused:
            session_to_resume(target, pid, chat_id, type_, DEFAULT)
        assert str(refused.value) == expected


def test_a_run_s_session_is_read_from_its_recorded_result_only_once_it_succeeded():
    assert session_of(fold(HISTORIES["succeeded"]).promises[1]) == SESSION
    assert session_of(fold(HISTORIES["running"]).promises[1]) is None
    assert session_of(fold(HISTORIES["succeeded without a session"]).promises[1]) is None


# --- intake: recorded once, in ``created`` ----------------------------------------------------


def submit(state: Projection, *tasks: NewPromise, request_id: str = "r2", chat_id: int | None = CHAT):
    return intake.create_plan(state, list(tasks), 10.0, DEFAULT, request_id, chat_id=chat_id, message_id=55)


def test_a_continuation_records_what_it_continues_and_the_session_in_created():
    state = fold(HISTORIES["succeeded"])
    effects, ids = submit(state, NewPromise(name="more", type="code", input="add a test", continues=1))
    [event] = [e.event for e in effects]
    assert ids == {"more": 2}
    assert (event.id, event.task, event.chat_id, event.continues, event.resume_session) == (2, "code", CHAT, 1, SESSION)


def test_a_continuation_shares_the_workspace_concurrency_key_of_its_chat():
    state = fold([Created(at=1.0, id=1, title="t", task="code", queue="code", chat_id=CHAT,
                          concurrency_key=f"workspace:{DEFAULT.workspace_for(CHAT)}")] + succeeded(1))
    effects, _ = submit(state, NewPromise(name="more", type="code", input="add a test", continues=1))
    assert effects[0].event.concurrency_key == state.promises[1].spec.concurrency_key


def test_a_plan_with_a_continuation_that_cannot_be_made_creates_nothing():
    state = fold(HISTORIES["running"])
    with pytest.raises(CannotContinue, match="#1 is still running"):
        submit(state, NewPromise(name="first", type="echo"), NewPromise(name="more", type="code", continues=1))


def test_a_refused_continuation_from_the_cli_says_why():
    state = fold(HISTORIES["succeeded"])
    effects, reply = intake.submit(state, Submit(request_id="cli-1", tasks=[
        NewPromise(type="code", input="more", continues=1)]), 10.0, DEFAULT)
    assert effects == [] and reply.error == "#1 belongs to another chat"


def test_the_session_survives_a_rebuild_a_snapshot_and_a_retry_and_reaches_the_work_item():
    history = HISTORIES["from the CLI"]
    task = NewPromise(name="more", type="code", input="add a test", continues=1)
    effects, ids = intake.create_plan(fold(history), [task], 10.0, DEFAULT, "r2")
    log = history + [e.event for e in effects]
    rebuilt = fold(log)  # a restarted scheduler replays the log and looks nothing up again
    restored = round_trip(rebuilt)
    assert everything(restored) == everything(rebuilt)
    for state in (rebuilt, restored):
        spec = state.promises[ids["more"]].spec
        assert (spec.continues, spec.resume_session) == (1, SESSION)

    sim = Sim(capacity={"code": 1})
    sim.record(*log)
    sim.step()
    [item] = sim.take()
    assert (item.id, item.task, item.resume_session) == (ids["more"], "code", SESSION)
    sim.record(Started(at=sim.now, id=item.id, attempt=1),
               AttemptFailed(at=sim.now, id=item.id, attempt=1, error="boom", retryable=False))
    sim.settle()
    effects, reply = intake.retry(sim.state, ids["more"], sim.now, "retry-1")
    [copy] = [e.event for e in effects if isinstance(e, Publish)]
    assert reply.ok and (copy.retry_of, copy.continues, copy.resume_session) == (ids["more"], 1, SESSION)


def respond(pid: int, continues: int) -> list:
    result = {"reply": "Continuing", "promises": [{"name": f"continue-{continues}", "type": "code",
                                                   "input": "add a test", "continues": continues}]}
    return [Created(at=4.0, id=pid, title="answer", task="respond", queue="respond", chat_id=CHAT, message_id=56),
            Dispatched(at=4.1, id=pid, attempt=1), Started(at=4.2, id=pid, attempt=1),
            Succeeded(at=4.3, id=pid, attempt=1, result=result)]


def test_a_respond_result_s_continuation_is_created_in_the_chat_with_its_session():
    state = fold(HISTORIES["succeeded"] + respond(2, continues=1))
    effects = intake.spawn_children(state, 2, 10.0, DEFAULT)
    created_, spawned = [e.event for e in effects]
    assert (created_.chat_id, created_.message_id, created_.parent_id) == (CHAT, 56, 2)
    assert (created_.continues, created_.resume_session) == (1, SESSION)
    assert spawned.children == {"continue-1": 3} and spawned.error is None


def test_a_respond_result_s_continuation_that_cannot_be_made_is_recorded_as_the_spawn_error():
    state = fold(HISTORIES["running"] + respond(2, continues=1))
    [spawned] = [e.event for e in intake.spawn_children(state, 2, 10.0, DEFAULT)]
    assert spawned.children == {} and spawned.error == "#1 is still running; it can be continued once it has ended"
