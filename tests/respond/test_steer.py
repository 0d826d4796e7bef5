"""Steering a promise by replying to Valor's message about it: which promise, which gesture, what it does; pure."""

import msgspec
import pytest

from promises.story import explain
from schemas.commands import NewPromise, RespondCommand, RespondResult
from schemas.events import (
    Attachment,
    AttemptFailed,
    Created,
    Dispatched,
    InstructionsAdded,
    InstructionsDelivered,
    Notified,
    RetryScheduled,
    Spawned,
    Started,
    Succeeded,
)
from services.executor.respond.commands import answer
from services.executor.respond.steer import steer
from valor.config import DEFAULT

from .helpers import CHAT, failed_after_retries, message, running, view_of


def sent(pid: int, kind: str, telegram_id: int, at: float = 70.0) -> Notified:
    return Notified(at=at, id=pid, kind=kind, chat_id=CHAT, telegram_message_id=telegram_id)


def answered(pid: int, children: dict[str, int], telegram_id: int) -> list:
    """The agent's answer to a message, which created ``children`` ("Promised: #13 …")."""
    result = {"reply": "Promised.", "promises": [{"name": n, "type": "code"} for n in children]}
    return [Created(at=1.0, id=pid, title="answer", task="respond", queue="respond", chat_id=CHAT, message_id=90),
            Dispatched(at=1.1, id=pid, attempt=1), Started(at=1.2, id=pid, attempt=1),
            Succeeded(at=1.3, id=pid, attempt=1, result=result),
            Spawned(at=1.4, id=pid, children=children),
            sent(pid, "terminal", telegram_id, at=1.5)]


def code(pid: int, title: str, parent: int | None = None, after: list[int] | None = None) -> Created:
    return Created(at=2.0, id=pid, title=title, task="code", queue="code", chat_id=CHAT, message_id=90,
                   parent_id=parent, depends_on=after or [], concurrency_key="workspace:w")


SESSION_RESULT = {"text": "Fixed it.", "session_id": "session-14", "cost_usd": 0.01}
VIEW = view_of(
    *running(12, "long refactor", task="code"), sent(12, "status", 412),
    *answered(11, {"code": 13}, 611), code(13, "add the login test", parent=11),
    code(14, "fix the login bug"), Dispatched(at=3.0, id=14, attempt=1), Started(at=3.1, id=14, attempt=1),
    Succeeded(at=9.0, id=14, attempt=1, result=SESSION_RESULT), sent(14, "terminal", 514, at=9.1),
    *running(15, "nap", task="sleep"), sent(15, "status", 415),
    *failed_after_retries(16), sent(16, "terminal", 516, at=105.0),
    *answered(17, {"a": 18, "b": 19}, 617), code(18, "step a", parent=17), code(19, "step b", parent=17, after=[18]),
    code(20, "flaky migration"), Dispatched(at=3.0, id=20, attempt=1), Started(at=3.1, id=20, attempt=1),
    sent(20, "status", 420), AttemptFailed(at=4.0, id=20, attempt=1, error="boom"),
    RetryScheduled(at=4.1, id=20, next_attempt=2, not_before=9.0, delay=5.0),
)


def reply(text: str, to: int, view=VIEW, **more) -> RespondResult | None:
    return steer(msgspec.structs.replace(message(text), reply_to=to, **more), view, DEFAULT)


def instruct(pid: int, text: str) -> list[RespondCommand]:
    return [RespondCommand(verb="instruct", id=pid, text=text)]


@pytest.mark.parametrize("text, to, pid", [
    ("stop", 412, 12),  # the status message of a running task
    ("cancel", 611, 13),  # the agent's "Promised: #13" answer: the promise it created
    ("❌", 415, 15),  # any task type
])
def test_stop_cancels_the_promise_the_message_is_about(text, to, pid):
    r = reply(text, to)
    assert r.commands == [RespondCommand(verb="cancel", id=pid, reason="cancelled in chat by Ana")]
    assert r.reply.startswith(f"Cancelling #{pid} ")


def test_stop_on_a_plan_s_answer_cancels_its_first_open_step_and_the_rest_goes_with_it():
    r = reply("stop", 617)
    assert r.commands == [RespondCommand(verb="cancel", id=18, reason="cancelled in chat by Ana")]
    assert r.reply == 'Cancelling #18 code "step a". #19 will be cancelled with it.'


def test_stop_on_an_ended_promise_says_so():
    assert reply("stop", 514) == RespondResult(reply="#14 already succeeded; there is nothing to cancel.")


@pytest.mark.parametrize("to, result", [
    (516, RespondResult(reply='Retrying #16 fail "flaky job" as a new promise.',
                        commands=[RespondCommand(verb="retry", id=16)])),
    (420, RespondResult(reply='Retrying #20 code "flaky migration" now.',
                        commands=[RespondCommand(verb="retry", id=20)])),
    (412, RespondResult(reply="#12 is running; only failed or cancelled promises can be retried.")),
])
def test_retry_retries_what_can_be_and_says_why_not_otherwise(to, result):
    assert reply("try again", to) == result


def test_why_explains_the_promise_from_its_events():
    r = reply("why?", 516)
    assert r.reply == explain(VIEW.events[16]) and r.commands == [] and r.promises == []
    both = reply("what happened?", 617).reply
    assert both == explain(VIEW.events[18]) + "\n\n" + explain(VIEW.events[19])


@pytest.mark.parametrize("text, to, pid, said", [
    ("also cover the signup form", 611, 13, 'Added to #13 code "add the login test" before it starts: '
                                            "also cover the signup form"),
    ("INJECTED: check the logs too", 412, 12, 'Passing that to #12 code "long refactor" while it runs: '
                                              "INJECTED: check the logs too"),
    ("use the staging database", 420, 20, 'Added to #20 code "flaky migration" for its next attempt: '
                                          "use the staging database"),
    ("#19 use pytest", 617, 19, 'Added to #19 code "step b" before it starts: use pytest'),
])
def test_other_text_adds_instructions_to_an_open_claude_code_task(text, to, pid, said):
    r = reply(text, to)
    assert (r.reply, r.commands, r.promises) == (said, instruct(pid, text.removeprefix("#19 ")), [])


def test_instructions_that_start_like_a_gesture_say_how_to_cancel_instead():
    r = reply("stop, wrong repo", 412)
    assert r.commands == instruct(12, "stop, wrong repo")
    assert r.reply.endswith("(To cancel it instead, reply just: stop)")


def test_files_sent_as_a_reply_join_the_instructions_by_their_paths():
    files = [Attachment(name="trace.txt", path="inbox/7/100-trace.txt", size=10, mime_type="text/plain")]
    r = reply("the trace", 412, attachments=files)
    assert r.commands == instruct(12, "the trace\n\nAttached: inbox/7/100-trace.txt (text/plain, 10 B)")


def test_instructions_to_an_ended_claude_code_task_continue_its_session():
    r = reply("now add a test for it", 514)
    assert r.promises == [NewPromise(name="continue-14", type="code", title="now add a test for it",
                                     input="now add a test for it", continues=14)]
    assert r.commands == []


@pytest.mark.parametrize("text, to, said", [
    ("use -v", 415, "#15 is a sleep task: its input is fixed, so it takes no instructions. "
                    "Reply stop to cancel it, or send a new request."),
    ("use pytest", 617, "That message is about 2 promises (#18, #19); start your reply with the one you mean, "
                        "e.g. #18 use pytest"),
    ("#99 stop", 617, "#99 is not one of the promises that message is about (#18, #19)."),
    ("#13", 611, 'What about #13 code "add the login test"? Reply stop, retry or why, or what it should do.'),
])
def test_what_cannot_take_instructions_gets_a_reply_saying_why(text, to, said):
    assert reply(text, to) == RespondResult(reply=said)


@pytest.mark.parametrize("text, to", [
    ("thanks!", 516),  # an ended task without a session: a message for the agents
    ("stop", 90),  # the user's own message (a reaction's record names it)
    ("stop", 777),  # a message Valor has no record of
    ("/status", 412),  # a command is a command
])
def test_a_reply_about_nothing_steerable_is_left_to_the_agents(text, to):
    assert reply(text, to) is None


def test_a_message_that_replies_to_nothing_is_a_new_request_never_a_gesture():
    assert steer(message("stop"), VIEW, DEFAULT) is None
    assert answer(message("stop"), VIEW, DEFAULT).commands == []


def test_an_agent_answer_that_created_nothing_is_not_steerable():
    view = view_of(*answered(30, {}, 630))
    assert reply("stop", 630, view=view) is None


def test_why_tells_instructions_added_before_the_start_and_delivered_into_a_running_session():
    events = [code(40, "refactor"),
              InstructionsAdded(at=3.0, id=40, text="use pytest", request_id="respond:41:0", message_id=7),
              Dispatched(at=4.0, id=40, attempt=1), Started(at=5.0, id=40, attempt=1),
              InstructionsAdded(at=6.0, id=40, text="check the logs too", request_id="respond:42:0", message_id=8),
              InstructionsDelivered(at=6.5, id=40, attempt=1, request_id="respond:42:0"),
              AttemptFailed(at=7.0, id=40, attempt=1, error="boom"),
              InstructionsAdded(at=8.0, id=40, text="mind the flaky test", request_id="respond:43:0")]
    lines = explain(events).splitlines()
    assert lines[2] == '+1.0s instructions added from message 7 before it started; they join its input: "use pytest"'
    assert lines[4] == ('+4.0s instructions added from message 8 while it ran, for the running attempt: '
                        '"check the logs too"')
    assert lines[5] == '+4.5s attempt 1 took the instructions "check the logs too" into its running session'
    assert lines[7] == ('+6.0s instructions added between attempts; they join the next one\'s input: '
                        '"mind the flaky test"')
