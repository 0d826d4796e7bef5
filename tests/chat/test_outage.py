"""Downtime end to end: nothing said to Valor while it was away goes unanswered or is answered twice."""

from collections import Counter
from datetime import UTC, datetime, timedelta

import msgspec

from promises.projection import Projection
from schemas.events import MessageDeleted, MessageEdited, MessageReceived, MessagesSkipped
from services.executor.respond.skipped import reply
from services.ingest.service import Ingest
from services.scheduler.intake import deletion, edit_for_message, summary_for_skipped

from .conftest import ALICE, CAROL, CONFIG, GROUP, notices, settle, stored_messages

SKIPPED = MessagesSkipped(chat_id=ALICE, count=1, first_id=7, last_id=7, oldest=1762160400.0,
                          newest=1762160400.0, horizon=7 * 86400, texts=["/do old thing"])


# --- the rules, with plain values ------------------------------------------------------------------------


def test_a_skipped_range_becomes_one_respond_promise_replying_to_its_newest_message_that_edits_and_deletions_leave_alone():
    state = Projection()
    [effect] = summary_for_skipped(state, SKIPPED, now=5.0, next_id=1)
    created = effect.event
    assert (created.task, created.chat_id, created.message_id, created.input["type"]) == (
        "respond", ALICE, 7, "messages_skipped")
    state.apply(created)
    assert summary_for_skipped(state, SKIPPED, now=6.0, next_id=2) == []  # the same range again: nothing new
    old = MessageReceived(chat_id=ALICE, message_id=7, text="/do other thing")
    assert edit_for_message(state, MessageEdited(chat_id=ALICE, message_id=7, edited_at=9.0, message=old), 7.0) == []
    assert deletion(state, MessageDeleted(chat_id=ALICE, message_ids=[7]), 7.0) == []


def test_the_summary_reply_says_how_many_when_and_what_in_one_message():
    one = reply(SKIPPED).reply
    assert one == ("While I was away you sent a message on 3 Nov that is too old for me to act on "
                   "(older than 7 days):\n• /do old thing\nResend the ones you still want.")


# --- end to end ------------------------------------------------------------------------------------------


async def test_thirty_messages_across_three_chats_sent_during_a_ten_minute_outage_are_all_answered_exactly_once_after_restart(
        js, engine, world, services):
    start_ingest, start_notifier = services
    world.user(ALICE, "alice", "Alice")
    world.user(CAROL, "carol", "Carol")
    world.group(-GROUP)
    ingest = await start_ingest()
    notifier = await start_notifier()
    before = await world.says(ALICE, ALICE, "are you there?")
    await settle(engine, notifier, expect_respond=1)
    await ingest.stop()
    await notifier.stop()

    world.online = False  # ten minutes of outage, in message dates rather than wall time
    start = datetime.now(UTC) - timedelta(minutes=10)
    chats = [(ALICE, ALICE, ""), (CAROL, CAROL, ""), (GROUP, ALICE, "@valor ")]
    missed = []
    for i in range(30):
        chat, sender, prefix = chats[i % 3]
        text = f"{prefix}/do task {i}" if i % 5 == 0 else f"{prefix}message {i}"
        message, _ = world.say(chat, sender, text, when=start + timedelta(seconds=20 * i))
        missed.append(message)
    world.online = True

    await start_ingest()
    notifier = await start_notifier()
    state, events = await settle(engine, notifier, expect_respond=31, timeout=60)

    stored = await stored_messages(js)
    assert Counter((m.chat_id, m.message_id) for m in stored) == Counter(
        {(m.chat_id, m.id): 1 for m in [before, *missed]})
    assert all(m.caught_up for m in stored if m.message_id != before.id)
    responds = [p for p in state.promises.values() if p.spec.task == "respond"]
    assert Counter((p.spec.chat_id, p.spec.message_id) for p in responds) == Counter(
        {(m.chat_id, m.id): 1 for m in [before, *missed]})
    for m in missed:
        owed = [p for p in state.promises.values() if p.spec.message_id == m.id and p.spec.chat_id == m.chat_id]
        terminal = [s for s in world.sent if s.chat_id == m.chat_id and s.reply_to == m.id
                    and not s.text.startswith("⏳")]
        assert len(terminal) == len(owed), (m.message, [s.text for s in terminal])
    assert Counter(e.id for e in notices(events, "terminal")) == {
        p.id: 1 for p in state.promises.values() if p.spec.chat_id is not None}


async def test_after_eight_days_away_each_chat_that_lost_messages_is_told_once_what_was_too_old(
        js, engine, world, services):
    start_ingest, start_notifier = services
    world.user(ALICE, "alice", "Alice")
    world.user(CAROL, "carol", "Carol")
    before = await world.says(ALICE, ALICE, "are you there?")
    await world.says(CAROL, CAROL, "hello")
    ingest = await start_ingest()
    notifier = await start_notifier()
    await settle(engine, notifier, expect_respond=2)
    await ingest.stop()
    await notifier.stop()

    world.online = False  # eight days away
    eight_days_ago = datetime(2026, 11, 3, 9, tzinfo=UTC)
    old = [world.say(ALICE, ALICE, f"old {i}", when=eight_days_ago + timedelta(days=i / 4))[0] for i in range(5)]
    fresh, _ = world.say(ALICE, ALICE, "fresh")
    world.say(CAROL, CAROL, "fresh too")
    world.online = True
    horizon = (datetime.now(UTC) - eight_days_ago).total_seconds() - 1.5 * 86400  # the newest old one is too old
    config = msgspec.structs.replace(CONFIG, telegram=msgspec.structs.replace(CONFIG.telegram,
                                                                              catchup_horizon=horizon))
    for _ in range(2):  # a second catch-up finds the range again and stores nothing new
        await ingest.stop()
        ingest = Ingest(js._nc, world.inbound(), config)
        await ingest.start(reconcile_forever=False)
        await ingest._kv.put(str(ALICE), str(before.id).encode())  # as if killed before its cursor was stored
    notifier = await start_notifier()
    state, _ = await settle(engine, notifier, expect_respond=5)
    await ingest.stop()

    told = [s for s in world.sent if "too old" in s.text]
    assert [(s.chat_id, s.reply_to) for s in told] == [(ALICE, old[-1].id)]  # Carol lost nothing
    assert told[0].text.startswith("While I was away you sent 5 messages between 3 Nov and 4 Nov that are too old")
    assert "• old 0\n• old 1\n• old 2\n• … and 2 more\nResend the ones you still want." in told[0].text
    answered = {p.spec.message_id for p in state.promises.values() if p.spec.task == "respond"}
    assert fresh.id in answered and not answered & {m.id for m in old[:-1]}
