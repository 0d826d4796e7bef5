"""A chat Valor can no longer write to: recorded once per notice, never retried, never in anyone's way (decision 52)."""

import asyncio
import time

from telethon.errors import ChatWriteForbiddenError, UserIsBlockedError

from schemas.events import NoticeFailed, Notified
from services.notifier.board import Board
from services.notifier.transport import unreachable

from .conftest import ALICE, GROUP, notices


def refusals(events):
    return [e for e in events if isinstance(e, NoticeFailed)]


async def until_settled(engine, notifier, chats_born: int, timeout: float = 30.0):
    """Until every promise born from a chat ended and its terminal notice is sent or refused, on the log."""
    deadline = time.monotonic() + timeout
    while True:
        events = [e for _, e in await engine.events()]
        state = await engine.projection()
        born = [p for p in state.promises.values() if p.spec.chat_id is not None]
        settled = {e.id for e in events if isinstance(e, Notified | NoticeFailed) and e.kind == "terminal"}
        if len(born) >= chats_born and all(p.terminal and p.id in settled for p in born):
            await notifier.run_until_idle()
            return state, [e for _, e in await engine.events()]
        if time.monotonic() > deadline:
            raise TimeoutError([(p.id, p.state, p.id in settled) for p in born])
        await asyncio.sleep(0.1)


def test_telegrams_refusals_for_good_are_told_apart_from_failures_worth_retrying():
    assert unreachable(UserIsBlockedError(request=None)) == "UserIsBlockedError"
    assert unreachable(ChatWriteForbiddenError(request=None)) == "ChatWriteForbiddenError"
    assert unreachable(ConnectionError("offline")) is None


def test_status_lists_a_chat_that_refused_until_a_request_comes_from_it_also_after_a_snapshot():
    from schemas.events import Created
    from services.scheduler.projection import Projection
    from services.scheduler.readmodel import ReadIndex
    from valor.render import status_text

    state = Projection()
    index = ReadIndex(state)

    def fold(*events):
        for event in events:
            state.apply(event)
            index.touch(event)

    fold(Created(id=1, title="a", task="respond", chat_id=ALICE, message_id=10, at=1.0),
         Created(id=2, title="b", task="respond", chat_id=GROUP, message_id=11, at=1.0),
         NoticeFailed(id=1, kind="terminal", chat_id=ALICE, reason="UserIsBlockedError", at=2.0),
         NoticeFailed(id=2, kind="terminal", chat_id=GROUP, reason="x", unsent=True, at=2.0))  # only followed one
    assert index.unreachable() == {ALICE: "UserIsBlockedError"} == ReadIndex(state).unreachable()  # rebuilt too
    fold(Created(id=3, title="job", task="echo", chat_id=ALICE, message_id=10, at=3.0))
    assert index.unreachable() == {ALICE: "UserIsBlockedError"}  # spawned by the old request: no word from her
    text = status_text({"server": {"url": "u", "name": "n", "version": "v"}, "scheduler": "s", "executors": {},
                        "streams": {}, "promises": {}, "unreachable": {str(ALICE): "UserIsBlockedError"}})
    assert f"unreachable chat {ALICE} (UserIsBlockedError)" in text
    fold(Created(id=4, title="c", task="respond", chat_id=ALICE, message_id=12, at=4.0))
    assert index.unreachable() == {} == ReadIndex(state).unreachable()


def test_the_board_closes_a_chat_on_a_refusal_and_opens_it_on_the_next_request_from_it():
    from schemas.events import Created

    board = Board()
    board.apply(Created(id=1, title="a", task="respond", chat_id=ALICE, message_id=10, at=1.0), 1)
    board.apply(NoticeFailed(id=1, kind="terminal", chat_id=ALICE, reason="UserIsBlockedError", at=2.0), 2)
    assert set(board.unreachable) == {ALICE} and "terminal" in board.items[1].notified  # never planned again
    board.apply(NoticeFailed(id=1, kind="reaction_end", chat_id=ALICE, reason="x", unsent=True, at=2.1), 3)
    board.apply(Created(id=2, title="job", task="echo", chat_id=ALICE, message_id=10, at=3.0), 4)
    assert set(board.unreachable) == {ALICE}  # a promise spawned by the old request is no word from the chat
    board.apply(Created(id=3, title="b", task="respond", chat_id=ALICE, message_id=11, at=4.0), 5)
    assert board.unreachable == {} and board.take_reopened() == {ALICE} and board.take_reopened() == set()


async def test_a_blocked_chat_is_refused_once_per_notice_while_a_healthy_chat_keeps_flowing_then_resumes(
        js, engine, world, services):
    world.user(ALICE, "alice", "Alice")
    world.group(-GROUP)
    start_ingest, start_notifier = services
    await start_ingest()
    notifier = await start_notifier()
    world.refuse[ALICE] = UserIsBlockedError
    await world.says(ALICE, ALICE, "/do first")
    await world.says(ALICE, ALICE, "/do second")
    for i in range(3):
        await world.says(GROUP, ALICE, f"@valor hello {i}", mentioned=True)
    state, events = await until_settled(engine, notifier, chats_born=2 * 2 + 3)

    group_replies = [s for s in world.sent if s.chat_id == GROUP]
    assert len(group_replies) == 3 and not world.messages_to(ALICE)  # the healthy chat got everything
    failed = refusals(events)
    alice_born = {p.id for p in state.promises.values() if p.spec.chat_id == ALICE}
    assert {e.id for e in failed if e.kind == "terminal"} == alice_born  # each notice told as refused, once
    assert len(failed) == len({(e.id, e.kind) for e in failed})
    assert [e.reason for e in failed if not e.unsent] == ["UserIsBlockedError"]  # Telegram was asked once
    assert world.calls.count(f"refused:{ALICE}") == 1
    assert not [e for e in notices(events) if e.chat_id == ALICE]
    assert (await engine.overview())[1] == {ALICE: "UserIsBlockedError"}  # what `valor status` and the page show

    # A restarted notifier remembers the chat is closed and sends nothing there, asking Telegram nothing.
    await notifier.stop()
    calls = len(world.calls)
    notifier = await start_notifier()
    await notifier.run_until_idle()
    assert world.calls[calls:].count(f"refused:{ALICE}") == 0 and not world.messages_to(ALICE)

    # Alice unblocks and writes again: her new request is answered; the old notices stay refused.
    del world.refuse[ALICE]
    asked = await world.says(ALICE, ALICE, "back again")
    state, events = await until_settled(engine, notifier, chats_born=2 * 2 + 3 + 1)
    assert [s.reply_to for s in world.messages_to(ALICE)] == [asked.id]
    assert len(refusals(events)) == len(failed)
    assert (await engine.overview())[1] == {}
