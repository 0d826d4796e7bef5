"""Edits of a request (decision 50): before its promise is dispatched the new text is what runs; after, the
user is told the edit came too late and how to run the new text.  Never silence."""

from __future__ import annotations

import asyncio
import time

import msgspec

from promises.projection import Projection
from promises.story import explain
from schemas.events import Created, Dispatched, InputEdited, MessageEdited, MessageReceived
from services.scheduler.intake import edit_for_message

from .conftest import ALICE, notices, settle, stored_messages


def message(text: str, message_id: int = 7) -> MessageReceived:
    return MessageReceived(chat_id=ALICE, message_id=message_id, sender_id=ALICE, text=text)


def respond_created(msg: MessageReceived, promise_id: int = 1) -> Created:
    return Created(id=promise_id, title=msg.text, task="respond", queue="respond",
                   input=msgspec.to_builtins(msg), chat_id=msg.chat_id, message_id=msg.message_id)


def edited(text: str, at: float = 100.0, message_id: int = 7) -> MessageEdited:
    return MessageEdited(chat_id=ALICE, message_id=message_id, edited_at=at, message=message(text, message_id))


# --- the rule, with plain values ---------------------------------------------------------------------------


def test_an_edit_before_dispatch_replaces_the_input_and_title_of_the_request():
    state = Projection()
    state.apply(respond_created(message("/do x")))
    [effect] = edit_for_message(state, edited("/do y"), now=5.0)
    assert effect.event.applied and effect.event.input["text"] == "/do y"
    state.apply(effect.event)
    assert state.promises[1].spec.input["text"] == "/do y" and state.promises[1].spec.title == "/do y"


def test_an_edit_after_dispatch_is_recorded_as_too_late_and_changes_nothing():
    state = Projection()
    state.apply(respond_created(message("/do x")))
    state.apply(Dispatched(id=1, attempt=1, queue="respond"))
    [effect] = edit_for_message(state, edited("/do y"), now=5.0)
    assert not effect.event.applied and effect.event.input is None and effect.event.text == "/do y"
    state.apply(effect.event)
    assert state.promises[1].spec.input["text"] == "/do x"


def test_each_edit_of_a_message_is_its_own_fact_and_an_unknown_message_has_none():
    state = Projection()
    state.apply(respond_created(message("/do x")))
    first, second = (edit_for_message(state, edited("/do y", at=t), 5.0)[0] for t in (100.0, 160.0))
    assert first.msg_id != second.msg_id
    assert edit_for_message(state, edited("/do y", message_id=8), 5.0) == []


# --- end to end, with the fake Telegram ---------------------------------------------------------------------


async def until(client, find, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        events = [e for _, e in await client.events()]
        if found := find(events):
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.05)


async def test_an_edit_to_a_request_not_started_runs_the_new_text_and_says_so(js, engine, world, services):
    world.user(ALICE, "alice", "Alice")
    start_ingest, start_notifier = services
    await start_ingest()
    notifier = await start_notifier()
    await world.says(ALICE, ALICE, "/think")  # the chat's turn is taken for a while: the next request waits
    asked = await world.says(ALICE, ALICE, "/do the old thing")
    await until(engine, lambda ev: [e for e in ev if isinstance(e, Created) and e.message_id == asked.id],
                "the request's promise")
    await world.edits_message(ALICE, asked.id, "/do the new thing")
    state, events = await settle(engine, notifier, expect_respond=2)
    [respond] = [p for p in state.promises.values() if p.spec.message_id == asked.id and p.spec.task == "respond"]
    [job] = [p for p in state.promises.values() if p.spec.parent_id == respond.id]
    assert job.spec.input == "the new thing" and respond.spec.title == "/do the new thing"
    assert [e.applied for e in events if isinstance(e, InputEdited)] == [True]
    assert [e.id for e in notices(events) if e.kind.startswith("edited:")] == [respond.id]
    replies = [s.text for s in world.sent if s.reply_to == asked.id]
    assert any("Got your edit before I started" in t for t in replies)
    story = explain([e for e in events if getattr(e, "id", None) == respond.id])
    assert "edited before it started" in story and "/do the new thing" in story
    stored = [m for m in await stored_messages(js, ALICE) if m.message_id == asked.id]
    assert [(type(m), m.text if isinstance(m, MessageReceived) else m.message.text) for m in stored] == [
        (MessageReceived, "/do the old thing"), (MessageEdited, "/do the new thing")]


async def test_an_edit_after_the_request_was_answered_gets_a_reply_saying_what_to_do(js, engine, world, services):
    world.user(ALICE, "alice", "Alice")
    start_ingest, start_notifier = services
    await start_ingest()
    notifier = await start_notifier()
    asked = await world.says(ALICE, ALICE, "hello")
    await settle(engine, notifier, expect_respond=1)
    await world.edits_message(ALICE, asked.id, "hello there")
    late = await until(engine, lambda ev: [e for e in ev if isinstance(e, InputEdited)], "the edit recorded")
    assert [e.applied for e in late] == [False]
    await until(engine, lambda ev: [e for e in notices(ev) if e.kind.startswith("edited:")], "the edit answered")
    reply = [s.text for s in world.sent if s.reply_to == asked.id and s.text.startswith("✏️")]
    assert len(reply) == 1 and "came after" in reply[0] and "send it as a new message" in reply[0]
    state = await engine.projection()
    assert [p.spec.input["text"] for p in state.promises.values() if p.spec.message_id == asked.id] == ["hello"]
    assert len(state.promises) == 1  # nothing ran again on its own
