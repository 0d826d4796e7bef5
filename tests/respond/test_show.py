"""``show 2`` replying to a plan's message: that step's story and whole result.  Pure."""

import msgspec
import pytest

from schemas.events import Created, Dispatched, Notified, Spawned, Started, Succeeded
from services.executor.respond.commands import answer
from valor.config import DEFAULT

from .helpers import CHAT, cancelled_by_failed_dependency, failed_after_retries, message, succeeded, view_of

PLAN, CHECKLIST, FINAL, SINGLE = 10, 700, 701, 702
LONG = "line one of the setup's output\n" + "more output\n" * 300


def plan_log():
    """Respond #10 planned setup (#11), job (#12, failed) and run (#13, cancelled); its two messages are recorded."""
    return view_of(
        Created(at=1.0, id=PLAN, title="/plan …", task="respond", chat_id=CHAT, message_id=100),
        Succeeded(at=2.0, id=PLAN, attempt=1, result={"reply": "Planned 3 tasks"}),
        Created(at=2.1, id=11, title="setup", task="echo", chat_id=CHAT, parent_id=PLAN, name="setup"),
        *failed_after_retries(12), *cancelled_by_failed_dependency(13, 12),
        Spawned(at=2.2, id=PLAN, children={"setup": 11, "job": 12, "run": 13}),
        Notified(at=2.3, id=PLAN, kind="terminal", chat_id=CHAT, telegram_message_id=CHECKLIST),
        Dispatched(at=2.9, id=11, attempt=1),
        Started(at=3.0, id=11, attempt=1),
        Succeeded(at=4.0, id=11, attempt=1, result={"stdout": LONG}, duration=1.0),
        Notified(at=105.0, id=PLAN, kind="final", chat_id=CHAT, telegram_message_id=FINAL),
        *succeeded(20, "alone"),
        Notified(at=51.0, id=20, kind="terminal", chat_id=CHAT, telegram_message_id=SINGLE),
    )


def say(text: str, reply_to: int | None):
    return answer(msgspec.structs.replace(message(text), reply_to=reply_to), plan_log(), DEFAULT).reply


@pytest.mark.parametrize("text, reply_to", [
    ("show 1", FINAL), ("show setup", CHECKLIST), ("Show #11", FINAL), ("show 11", CHECKLIST), ("show Setup.", FINAL)])
def test_show_names_a_step_by_number_name_or_id_and_answers_with_its_whole_result(text, reply_to):
    reply = say(text, reply_to)
    assert reply.startswith('#11 echo "setup": succeeded on attempt 1')
    assert reply.endswith("Result:\n" + LONG.strip())  # in full, not the one line of the checklist


def test_show_of_a_failed_step_tells_its_story():
    reply = say("show job", FINAL)
    assert reply.startswith('#12 fail "flaky job": failed: connection refused') and "attempt 3 failed" in reply
    assert "Result:" not in reply


def test_show_without_a_step_or_with_an_unknown_one_lists_the_steps():
    steps = "1 setup (#11), 2 job (#12), 3 run (#13)"
    assert say("show", FINAL) == f'Which step? {steps}. Reply "show 2" or "show run".'
    assert say("show 7", CHECKLIST) == f"This plan has no step '7'. Its steps: {steps}."
    assert say("show #20", CHECKLIST) == f"This plan has no step '#20'. Its steps: {steps}."


@pytest.mark.parametrize("text, reply_to", [("show 1", None), ("show 1", SINGLE), ("show 1", 999),
                                            ("please show me 1", FINAL)])
def test_show_means_nothing_special_unless_it_replies_to_a_plan_s_message(text, reply_to):
    assert "Result:" not in say(text, reply_to) and "Which step" not in say(text, reply_to)
