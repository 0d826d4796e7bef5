"""Continuing a Claude Code task from the chat: ``/continue`` and plain replies to its notices once it ended; pure."""

import msgspec
import pytest

from promises.story import explain
from schemas.commands import NewPromise
from schemas.events import Created, Dispatched, Notified, Started, Succeeded
from services.executor.respond.commands import answer, help_text
from services.executor.respond.steer import steer
from valor.config import DEFAULT

from .helpers import CHAT, failed_after_retries, message, running, view_of

SESSION = "6f1c2d9e-0000-4000-8000-000000000001"


def claude_run(pid: int, task: str = "code", ended_at: float = 50.0, title: str = "fix the login test") -> list:
    """A Claude Code task that succeeded, with its status message (400 + id) and result message (500 + id)."""
    result = {"text": "Fixed it.", "cost_usd": 0.01, "session_id": f"session-{pid}", "turns": 2, "duration_ms": 10}
    return [
        Created(at=ended_at - 5, id=pid, title=title, task=task, queue="code", chat_id=CHAT, message_id=90),
        Dispatched(at=ended_at - 4, id=pid, attempt=1),
        Started(at=ended_at - 3, id=pid, attempt=1),
        Notified(at=ended_at - 2, id=pid, kind="status", chat_id=CHAT, telegram_message_id=400 + pid),
        Succeeded(at=ended_at, id=pid, attempt=1, result=result),
        Notified(at=ended_at + 1, id=pid, kind="terminal", chat_id=CHAT, telegram_message_id=500 + pid),
    ]


def answered(pid: int) -> list:
    """A respond promise: 👀 on the user's message 90 and its reply (message 600 + id)."""
    return [
        Created(at=1.0, id=pid, title="answer", task="respond", queue="respond", chat_id=CHAT, message_id=90),
        Notified(at=1.1, id=pid, kind="reaction_start", chat_id=CHAT, telegram_message_id=90),
        Notified(at=1.2, id=pid, kind="terminal", chat_id=CHAT, telegram_message_id=600 + pid),
    ]


def noticed_running(pid: int) -> list:
    return running(pid, "long refactor", task="code") + [
        Notified(at=61.0, id=pid, kind="status", chat_id=CHAT, telegram_message_id=400 + pid)]


def noticed_failed(pid: int) -> list:
    events = failed_after_retries(pid)
    events[0] = msgspec.structs.replace(events[0], task="code", title="migrate the db")
    return events + [Notified(at=105.0, id=pid, kind="terminal", chat_id=CHAT, telegram_message_id=500 + pid)]


def shell_run(pid: int) -> list:
    events = claude_run(pid, task="shell", title="ls")
    events[4] = msgspec.structs.replace(events[4], result={"exit_code": 0, "stdout": "a.py"})
    return events


CHAT_LOG = view_of(
    *answered(10),
    *claude_run(12, ended_at=170.0),  # ended last
    *claude_run(13, task="code_review", ended_at=60.0, title="review auth.py"),
    *noticed_running(14),
    *noticed_failed(15),
    *shell_run(16),
)


def say(text: str, reply_to: int | None = None, view=CHAT_LOG):
    """What the responder answers without a language model: a reply steers first, else the command agent."""
    msg = msgspec.structs.replace(message(text), reply_to=reply_to)
    return steer(msg, view, DEFAULT) or answer(msg, view, DEFAULT)


def continuing(pid: int, type_: str, text: str) -> NewPromise:
    return NewPromise(name=f"continue-{pid}", type=type_, title=text.splitlines()[0], input=text, continues=pid)


@pytest.mark.parametrize("text, reply_to, pid, type_, instruction", [
    ("/continue #13 check the session handling too", None, 13, "code_review", "check the session handling too"),
    ("/continue 12 now add a test for it", None, 12, "code", "now add a test for it"),
    ("/continue now add a test for it", None, 12, "code", "now add a test for it"),  # the last one that ended
    ("/continue check the session handling too", 513, 13, "code_review", "check the session handling too"),
    ("/continue check the session handling too", 413, 13, "code_review", "check the session handling too"),
    ("/continue now add a test for it", 516, 12, "code", "now add a test for it"),  # a shell task's: the last
    ("/continue@valor_bot #12 now add\na test for it", None, 12, "code", "now add\na test for it"),
    ("now add a test for it", 512, 12, "code", "now add a test for it"),  # a plain reply to its result
    ("check the session handling too", 413, 13, "code_review", "check the session handling too"),  # to its status
])
def test_continue_promises_a_task_of_the_same_type_that_resumes_the_session(text, reply_to, pid, type_,
                                                                               instruction):
    r = say(text, reply_to)
    assert r.promises == [continuing(pid, type_, instruction)]
    assert r.reply == f"Continuing #{pid} in its {type_} session: {instruction.splitlines()[0]}"
    assert r.commands == []


@pytest.mark.parametrize("text, reply_to, reply", [
    ("/continue", None, "What should #12 do next? Usage: /continue [id] text, e.g. /continue #12 now add a test for it"),
    ("/continue #12", None, "What should #12 do next? Usage: /continue [id] text, e.g. /continue #12 now add a test for it"),
    ("/continue #99 more", None, "There is no promise #99 in this chat."),
    ("/continue #16 more", None, "#16 is a shell task; only Claude Code tasks (analysis, code, code_review, search) "
                                 "have a session to continue."),
    ("/continue #10 more", None, "#10 is a respond task; only Claude Code tasks (analysis, code, code_review, search) "
                                 "have a session to continue."),
    ("/continue #14 more", None, "#14 is still running; it can be continued once it has ended."),
    ("/continue more", 414, "#14 is still running; it can be continued once it has ended."),
    ("/continue #15 more", None, "#15 failed without a recorded Claude Code session, so there is nothing to resume."),
    ("add the index first", 515, "#15 failed without a recorded Claude Code session, so there is nothing to "
                                 "resume."),
])
def test_what_cannot_be_continued_gets_a_reply_saying_why(text, reply_to, reply):
    r = say(text, reply_to)
    assert (r.reply, r.promises, r.commands) == (reply, [], [])


def test_a_chat_without_an_ended_claude_code_task_is_told_so():
    view = view_of(*answered(10), *noticed_running(14), *shell_run(16))
    r = say("/continue more", view=view)
    assert r.reply == "This chat has no ended Claude Code task to continue; /do <what to do> starts one."
    assert r.promises == []


@pytest.mark.parametrize("reply_to", [
    None,  # not a reply
    610,  # the agent's own reply
    90,  # the user's message that got the 👀: a reaction's record names it, not a message Valor sent
    516,  # a shell task's result
    777,  # a message Valor has no record of
])
def test_a_plain_message_that_replies_to_nothing_continuable_is_not_a_continuation(reply_to):
    r = say("now add a test for it", reply_to)
    assert r.promises == [] and r.reply.startswith("No language model is configured")


def test_help_mentions_continue_and_replies():
    assert "/continue [id] text" in help_text(DEFAULT) and "reply to its result" in help_text(DEFAULT)


def test_why_tells_which_session_a_continuation_went_on_with():
    created = Created(at=1.0, id=20, title="add a test", task="code", chat_id=CHAT, continues=12,
                      resume_session="session-12")
    assert "created, continuing #12 in its session" in explain([created])
