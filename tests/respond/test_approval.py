"""Answering a plan that waits for approval from the chat: the words, which plan they mean, the edits; pure."""

import msgspec
import pytest

from promises import story
from promises.story import explain
from schemas.commands import RespondCommand, RespondResult
from schemas.events import Approved, Created, Notified, Spawned, Succeeded
from services.executor.respond import approval
from services.executor.respond.commands import answer as command_answer
from services.executor.respond.commands import help_text, status_line
from valor.config import DEFAULT

from .helpers import CHAT, message, view_of

WHY = "3 steps, more than 2"


def held_plan(respond: int, first: int, names=("setup", "write", "run"), types=("echo", "code", "echo"),
              expires: float | None = 3700.0) -> list:
    """A respond promise whose plan waits: its reply is Valor's message 600 + respond."""
    ids = {name: first + i for i, name in enumerate(names)}
    steps = [Created(at=100.0, id=first + i, title=f"{name} things", task=types[i], name=name, chat_id=CHAT,
                     message_id=90, parent_id=respond, request_id=f"spawn:{respond}", request_index=i,
                     depends_on=[first + i - 1] if i else [], awaits_approval=WHY, approve_by=expires)
             for i, name in enumerate(names)]
    return [
        Created(at=99.0, id=respond, title="answer", task="respond", queue="respond", chat_id=CHAT, message_id=90),
        Succeeded(at=100.0, id=respond, attempt=1, result={"reply": "Planned."}),
        *steps,
        Spawned(at=100.0, id=respond, children=ids),
        Notified(at=101.0, id=respond, kind="terminal", chat_id=CHAT, telegram_message_id=600 + respond),
    ]


ONE = view_of(*held_plan(10, 11))
TWO = view_of(*held_plan(10, 11), *held_plan(20, 21, names=("lint",), types=("shell",)))


def say(text: str, view=ONE, reply_to: int | None = None) -> RespondResult | None:
    return approval.answer(msgspec.structs.replace(message(text), reply_to=reply_to), view)


@pytest.mark.parametrize("text, verb", [
    ("go", "approve"), ("Go!", "approve"), ("yes", "approve"), ("Yes.", "approve"), ("👍", "approve"),
    ("👍🏽", "approve"), ("👍👍", "approve"), ("  OK ", "approve"), ("go ahead", "approve"),
    ("no", "reject"), ("No.", "reject"), ("nope", "reject"), ("👎", "reject"),
    ("go on with #12", None), ("yes but skip step 2", None), ("know", None), ("", None), ("/go", None),
])
def test_the_words_that_approve_or_refuse_a_plan(text, verb):
    assert approval.gesture(text) == verb


def test_go_approves_the_chats_only_waiting_plan_naming_who_said_it():
    assert say("go") == RespondResult(
        reply="Approved: #11 setup, #12 write, #13 run may run now.",
        commands=[RespondCommand(verb="approve", id=11, reason="approved in chat by Ana")])


def test_no_refuses_it_and_every_step_is_named():
    assert say("no") == RespondResult(
        reply="Rejected: #11 setup, #12 write, #13 run are cancelled; none of it ran.",
        commands=[RespondCommand(verb="reject", id=11, reason="plan rejected in chat by Ana")])


def test_a_reply_to_a_plans_message_answers_that_plan_when_several_wait():
    assert say("👍", TWO, reply_to=620).commands == [
        RespondCommand(verb="approve", id=21, reason="approved in chat by Ana")]
    assert say("no", TWO, reply_to=610).commands[0].id == 11
    which = say("go", TWO)
    assert which.commands == [] and which.reply == (
        "2 plans wait for approval: #11 setup, #12 write, #13 run; #21 lint. Reply to the message of the one "
        "you mean, or send /approve with one of its ids.")


def test_an_answer_to_a_plan_no_longer_waiting_says_so():
    view = view_of(*held_plan(10, 11), *[Approved(at=102.0, id=i) for i in (11, 12, 13)])
    assert say("yes", view, reply_to=610) == RespondResult(
        reply="That plan is no longer waiting for approval (#11 queued, #12 waiting, #13 waiting).")


@pytest.mark.parametrize("text, reply_to", [
    ("yes", None),  # nothing waits: the words mean nothing special
    ("go", 999),  # a reply to some other message
    ("what is the weather", None),
])
def test_other_messages_are_left_to_the_other_agents(text, reply_to):
    quiet = view_of(*held_plan(10, 11)[:2])
    assert say(text, quiet, reply_to=reply_to) is None
    assert say("go", ONE, reply_to=999) is None


def test_an_edit_goes_to_the_language_model_with_the_plan_in_view():
    assert say("skip step 2", reply_to=610) is None and say("skip step 2") is None
    edit = msgspec.structs.replace(message("skip step 2"), reply_to=610)
    assert approval.context(edit, ONE) == (
        "(This replies to your message about the plan #11 setup, #12 write, #13 run, which awaits approval: "
        "to change it, reject it and create the changed plan.)")
    assert approval.context(message("skip step 2"), ONE) == ""


def test_without_a_language_model_an_edit_is_refused_with_the_reason():
    refused = "Without a language model I can't change a plan: answer go to run it as it is, or no to cancel it " \
              "and send a new /plan."
    for reply_to in (610, None):
        result = command_answer(msgspec.structs.replace(message("skip step 2"), reply_to=reply_to), ONE, DEFAULT)
        assert result == RespondResult(reply=f"Waiting for approval: #11 setup, #12 write, #13 run. {refused}")


def test_show_n_replying_to_a_waiting_plan_still_shows_the_step():
    shown = command_answer(msgspec.structs.replace(message("show 2"), reply_to=610), ONE, DEFAULT)
    assert shown.reply.startswith('#12 code "write things": awaiting approval')


@pytest.mark.parametrize("text, reply_to, expected", [
    ("/approve", None, RespondCommand(verb="approve", id=11, reason="approved in chat by Ana")),
    ("/approve #21", None, RespondCommand(verb="approve", id=21, reason="approved in chat by Ana")),
    ("/approve", 620, RespondCommand(verb="approve", id=21, reason="approved in chat by Ana")),
    ("/reject 12 too expensive", None,
     RespondCommand(verb="reject", id=11, reason="plan rejected in chat by Ana: too expensive")),
    ("/reject", 620, RespondCommand(verb="reject", id=21, reason="plan rejected in chat by Ana")),
])
def test_approve_and_reject_commands_name_the_plan_by_any_id_or_reply(text, reply_to, expected):
    view = TWO if "#21" in text or reply_to == 620 or "12" in text else ONE
    result = command_answer(msgspec.structs.replace(message(text), reply_to=reply_to), view, DEFAULT)
    assert result.commands == [expected]


def test_approve_without_a_waiting_plan_or_an_unknown_id_is_told_why():
    empty = view_of(*held_plan(10, 11)[:2])
    assert command_answer(message("/approve"), empty, DEFAULT).reply == "No plan in this chat is waiting for approval."
    assert command_answer(message("/reject 77"), ONE, DEFAULT).reply == "There is no promise #77 in this chat."


def test_the_plan_is_shown_with_names_types_dependencies_ids_and_how_to_answer():
    steps = [e for e in held_plan(10, 11) if isinstance(e, Created) and e.task != "respond"]
    assert story.approval_prompt(steps) == "\n".join([
        "#11 setup (echo)",
        "#12 write (code, after #11)",
        "#13 run (echo, after #12)",
        "✋ This plan waits for your approval (3 steps, more than 2). Answer go or 👍 to run it, no to cancel it, "
        "or say what to change. Unanswered, it is cancelled in 1h."])
    never = [msgspec.structs.replace(s, approve_by=None) for s in steps]
    assert story.how_to_answer(never).endswith("or say what to change.")


def test_status_why_and_help_tell_of_approval():
    assert status_line(ONE.get(12)) == f'#12 code "write things": awaiting approval ({WHY})'
    story = explain(ONE.events[12])
    assert story.splitlines()[0] == f'#12 code "write things": awaiting approval ({WHY})'
    assert story.splitlines()[1].endswith(f"created by #10 as step 'write', after #11; awaiting approval ({WHY})")
    assert "answer go (or 👍) to run it, no to cancel it" in help_text(DEFAULT)
