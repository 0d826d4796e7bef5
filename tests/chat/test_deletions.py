"""Deleting a request (decision 50): before its promise is dispatched it is cancelled, naming the deletion;
after that nothing changes, and /why tells it either way."""

from __future__ import annotations

from schemas.events import Cancelled, Dispatched, MessageDeleted, RequestDeleted
from services.executor.respond.why import explain
from services.scheduler.intake import deletion
from services.scheduler.projection import Projection

from .conftest import ALICE, settle
from .test_edits import message, respond_created, until


def test_a_deleted_request_not_dispatched_is_cancelled_naming_the_deletion():
    state = Projection()
    state.apply(respond_created(message("/do x")))
    effects = deletion(state, MessageDeleted(chat_id=ALICE, message_ids=[7, 99]), now=5.0)
    assert [type(e.event) for e in effects] == [RequestDeleted, Cancelled]
    assert effects[0].event.cancelled and "deleted" in effects[1].event.reason


def test_a_deletion_without_a_chat_finds_the_request_by_its_id():
    state = Projection()
    state.apply(respond_created(message("/do x")))
    [recorded, _] = deletion(state, MessageDeleted(chat_id=0, message_ids=[7]), now=5.0)
    assert recorded.event.id == 1


def test_a_deleted_request_already_dispatched_is_only_recorded():
    state = Projection()
    state.apply(respond_created(message("/do x")))
    state.apply(Dispatched(id=1, attempt=1, queue="respond"))
    [recorded] = deletion(state, MessageDeleted(chat_id=ALICE, message_ids=[7]), now=5.0)
    assert not recorded.event.cancelled


async def test_deleting_a_waiting_request_cancels_it_and_a_started_one_runs_on(js, engine, world, services):
    world.user(ALICE, "alice", "Alice")
    start_ingest, start_notifier = services
    await start_ingest()
    notifier = await start_notifier()
    first = await world.says(ALICE, ALICE, "/think")  # takes the chat's turn: the next request waits
    waiting = await world.says(ALICE, ALICE, "/do the thing")
    await until(engine, lambda ev: [e for e in ev if getattr(e, "message_id", None) == waiting.id],
                "the waiting request's promise")
    await world.deletes(ALICE, [waiting.id], chat_known=False)  # a user account's private chat: ids only
    await world.deletes(ALICE, [first.id])
    state, events = await settle(engine, notifier, expect_respond=2)
    by_message = {p.spec.message_id: p for p in state.promises.values() if p.spec.task == "respond"}
    assert by_message[waiting.id].state == "cancelled" and "deleted" in by_message[waiting.id].error
    assert by_message[first.id].state == "succeeded"  # it had started: the work is not undone
    assert not [p for p in state.promises.values() if p.spec.parent_id == by_message[waiting.id].id]
    recorded = {e.id: e.cancelled for e in events if isinstance(e, RequestDeleted)}
    assert recorded == {by_message[waiting.id].id: True, by_message[first.id].id: False}
    for p in by_message.values():
        story = explain([e for e in events if getattr(e, "id", None) == p.id])
        assert f"message {p.spec.message_id} was deleted" in story
    cancelled_note = [s for s in world.messages_to(ALICE) if f"#{by_message[waiting.id].id}" in s.text]
    assert cancelled_note and all(s.reply_to is None for s in cancelled_note)  # nothing to reply to
    assert not [r for r in world.reactions if r[1] == waiting.id]


def test_a_deletion_naming_no_chat_waits_a_round_for_a_message_of_its_round_with_one_of_its_ids():
    from services.scheduler.inputs import _deletes_one_of

    seen = {("chat", 504, 120), ("req", "x")}  # a message stored in this round, and a command
    assert _deletes_one_of(("chat", 0, (119, 120)), seen)  # the chaos suite found it cancelling nothing
    assert not _deletes_one_of(("chat", 0, (121,)), seen)
    assert not _deletes_one_of(("chat", 504, 120), seen)  # one naming its chat shares the message's key instead
