"""Status messages never lie: one whose notifier died before recording it is found and set to its end."""

import asyncio
import time

from schemas.events import Created, NoticeIntended, Notified, Spawned, Started, Succeeded
from services.notifier.board import Board
from services.notifier.plan import Edit, Send, due
from valor.config import DAY

from .conftest import ALICE, dies_before_recording, notices
from .test_digest import all_ended


async def status_sent_unrecorded_then_ended(engine, world, services):
    """A background promise whose notifier died after sending its status, before recording it; then it ended."""
    world.user(ALICE, "alice", "Alice")
    start_ingest, start_notifier = services
    await start_ingest()
    killed, die_before_recording = dies_before_recording("status")
    first = await start_notifier(record_hook=die_before_recording)
    await world.says(ALICE, ALICE, "/sleep")
    await asyncio.wait_for(killed.wait(), 20)
    await first.stop()
    state = await all_ended(engine, chats_born=2)  # restarted only once the work is over
    nap = next(p for p in state.promises.values() if p.spec.name == "nap")
    [shown] = [s for s in world.messages_to(ALICE) if s.text.startswith(f"⏳ #{nap.id}")]
    return nap, shown, start_notifier


async def test_a_status_sent_but_never_recorded_is_edited_to_its_end_after_a_restart(js, engine, world, services):
    nap, shown, start_notifier = await status_sent_unrecorded_then_ended(engine, world, services)

    second = await start_notifier()
    await second.run_until_idle()
    edits = [t for _, m, t in world.edits if m == shown.id]
    assert edits and edits[-1].startswith(f"✅ #{nap.id}")  # found (it was sent) and set to its end
    assert edits[-1] not in [s.text for s in world.messages_to(ALICE)]  # not sent as a second status
    events = [e for _, e in await engine.events()]
    assert [(e.id, e.telegram_message_id) for e in notices(events, "status")] == [(nap.id, shown.id)]
    assert [e.id for e in notices(events, "status_end")] == [nap.id]

    await second.stop()  # told once: a third start edits nothing
    calls = len(world.calls)
    third = await start_notifier()
    await third.run_until_idle()
    assert "edit" not in world.calls[calls:] and third.outbox.stats["edited"] == 0


async def test_a_status_restarted_past_the_notice_horizon_is_still_set_to_its_end(js, engine, world, services):
    nap, shown, start_notifier = await status_sent_unrecorded_then_ended(engine, world, services)

    second = await start_notifier(clock=lambda: time.time() + 2 * DAY)
    await second.run_until_idle()
    assert [t for _, m, t in world.edits if m == shown.id][-1].startswith(f"✅ #{nap.id}")


async def test_a_bot_that_cannot_look_sends_no_second_status_once_the_work_is_over(js, engine, world, services):
    world.bot = True  # no history to look through: the stale status is a bot's limit, a duplicate is not made
    nap, _, start_notifier = await status_sent_unrecorded_then_ended(engine, world, services)
    second = await start_notifier()
    await second.run_until_idle()
    statuses = [s for s in world.messages_to(ALICE) if s.text.startswith(f"⏳ #{nap.id}")
                or s.text.startswith(f"✅ #{nap.id}: done")]
    assert len(statuses) == 1
    events = [e for _, e in await engine.events()]
    assert [(e.id, e.telegram_message_id) for e in notices(events, "status")] == [(nap.id, None)]


def _board(*events) -> Board:
    board = Board()
    for seq, event in enumerate(events, 1):
        board.apply(event, seq)
    return board


NAP = [Created(at=1.0, id=2, title="nap", task="sleep", chat_id=ALICE, message_id=9),
       Started(at=1.0, id=2, attempt=1, executor="x"),
       NoticeIntended(at=1.1, id=2, kind="status", chat_id=ALICE, reply_to=9, parts=["d1"])]
ENDED = Succeeded(at=2.0, id=2, attempt=1, result="ok", duration=1.0)


def test_an_ended_promise_whose_status_was_only_intended_is_looked_for_never_sent_at_any_age():
    board = _board(*NAP, ENDED)
    for now in (3.0, 3.0 + 2 * DAY):  # within the notice horizon and long past it
        [look] = [a for a in due(board, board.items[2], now, DAY) if isinstance(a, Send) and a.kind == "status"]
        assert look.find_only and look.intended and look.recorded == ("d1",) and look.reply_to == 9
        assert look.text.startswith("✅ #2 nap: done")


def test_a_recorded_status_is_set_to_its_end_once():
    sent = Notified(at=1.2, id=2, kind="status", chat_id=ALICE, telegram_message_id=50)
    running = _board(*NAP, sent)
    [edit] = [a for a in due(running, running.items[2], 1.5, DAY) if isinstance(a, Edit)]
    assert not edit.final and edit.text.startswith("⏳")
    board = _board(*NAP, sent, ENDED)
    [edit] = [a for a in due(board, board.items[2], 3.0 + 2 * DAY, DAY) if isinstance(a, Edit)]
    assert edit.final and edit.message_id == 50 and edit.text.startswith("✅ #2 nap: done")
    told = _board(*NAP, sent, ENDED, Notified(at=2.1, id=2, kind="status_end", chat_id=ALICE,
                                              telegram_message_id=50))
    assert [a.kind for a in due(told, told.items[2], 3.0, DAY)] == ["terminal"]  # no edit, no status
    not_found = _board(*NAP, Notified(at=1.2, id=2, kind="status", chat_id=ALICE), ENDED)
    assert [a.kind for a in due(not_found, not_found.items[2], 3.0, DAY)] == ["terminal"]


def test_a_plans_checklist_is_set_to_its_end_once_every_step_ended_also_past_the_horizon():
    plan = [Created(at=1.0, id=1, title="/steps", task="respond", chat_id=ALICE, message_id=9),
            Succeeded(at=1.1, id=1, attempt=1, result={"reply": "Two steps.", "promises": [
                {"name": "a", "type": "echo", "input": 1}, {"name": "b", "type": "echo", "input": 2}]}),
            Created(at=1.2, id=2, title="a", task="echo", chat_id=ALICE, message_id=9, parent_id=1, name="a"),
            Created(at=1.2, id=3, title="b", task="echo", chat_id=ALICE, message_id=9, parent_id=1, name="b"),
            Spawned(at=1.2, id=1, children={"a": 2, "b": 3}),
            Notified(at=1.3, id=1, kind="terminal", chat_id=ALICE, telegram_message_id=70),  # the checklist inline
            Succeeded(at=2.0, id=2, attempt=1, result="1")]
    running = _board(*plan)
    [edit] = [a for a in due(running, running.items[1], 2.5, DAY) if isinstance(a, Edit)]
    assert not edit.final and edit.message_id == 70
    ended = _board(*plan, Succeeded(at=3.0, id=3, attempt=1, result="2"))
    for now in (3.5, 3.0 + 2 * DAY):  # within the notice horizon and long past it
        [edit] = [a for a in due(ended, ended.items[1], now, DAY) if isinstance(a, Edit)]
        assert edit.final and edit.message_id == 70 and "✅" in edit.text
    told = _board(*plan, Succeeded(at=3.0, id=3, attempt=1, result="2"),
                  Notified(at=3.1, id=1, kind="status_end", chat_id=ALICE, telegram_message_id=70))
    assert not [a for a in due(told, told.items[1], 3.5, DAY) if isinstance(a, Edit)]
