"""Downtime end to end: nothing said to Valor while it was away goes unanswered or is answered twice."""

from collections import Counter
from datetime import UTC, datetime, timedelta

import msgspec

from schemas.events import MessageDeleted, MessageEdited, MessageReceived, MessagesSkipped
from services.executor.respond.skipped import reply
from services.ingest.service import Ingest
from services.scheduler.intake import (
    deletion,
    edit_for_message,
    respond_for_message,
    runs_them,
    summary_for_skipped,
)
from services.scheduler.projection import Projection

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


def test_run_them_in_reply_to_the_summary_makes_each_kept_message_a_request_once():
    from schemas.events import Notified

    kept = [MessageReceived(chat_id=ALICE, message_id=i, text=f"/do old {i}", sent_at=1762160400.0) for i in (5, 7)]
    state = Projection()
    [summary] = summary_for_skipped(state, msgspec.structs.replace(SKIPPED, first_id=5, count=2, messages=kept),
                                    now=5.0, next_id=1)
    state.apply(summary.event)
    state.apply(Notified(at=6.0, id=1, kind="terminal", chat_id=ALICE, telegram_message_id=900))
    run = MessageReceived(chat_id=ALICE, message_id=20, text="please run them all.", reply_to=900)
    effects = respond_for_message(state, run, now=7.0, next_id=2)
    assert [(e.event.id, e.event.message_id, e.event.input["text"]) for e in effects] == [
        (2, 20, "please run them all."), (3, 5, "/do old 5"), (4, 7, "/do old 7")]
    for e in effects:
        state.apply(e.event)
    again = MessageReceived(chat_id=ALICE, message_id=21, text="run them", reply_to=900)
    assert [e.event.message_id for e in respond_for_message(state, again, now=8.0, next_id=5)] == [21]
    other = MessageReceived(chat_id=ALICE, message_id=22, text="run them", reply_to=55)  # not the summary
    assert [e.event.message_id for e in respond_for_message(state, other, now=8.0, next_id=5)] == [22]
    assert not runs_them("run them tomorrow") and runs_them("Run them!") and runs_them("@valor run them")


def test_the_summary_keeps_whole_messages_only_as_far_as_one_event_can_carry():
    from schemas.events import encode
    from services.ingest.accept import MAX_EVENT_BYTES, skipped

    heavy = [MessageReceived(chat_id=ALICE, message_id=i, text="\x00" * 10_000, sent_at=1762160400.0)
             for i in range(1, 61)]  # a NUL is six bytes in JSON: 60 KB each as stored
    fact = skipped(heavy, 7 * 86400)
    assert fact.count == 60 and 1 <= len(fact.messages) < 60 and len(encode(fact)) <= MAX_EVENT_BYTES
    assert [m.message_id for m in fact.messages] == list(range(1, len(fact.messages) + 1))  # the first ones
    light = skipped(heavy[:2] + [MessageReceived(chat_id=ALICE, message_id=99, text="hi")], 7 * 86400)
    assert len(light.messages) == 3


def test_a_run_them_reply_to_the_summary_is_answered_without_a_model():
    from services.executor.respond.skipped import ran
    from services.executor.respond.view import ChatView
    from services.scheduler.projection import Promise

    kept = [MessageReceived(chat_id=ALICE, message_id=i, text=f"/do old {i}") for i in (5, 7)]
    [effect] = summary_for_skipped(Projection(), msgspec.structs.replace(SKIPPED, messages=kept), now=5.0, next_id=1)
    view = ChatView(ALICE, {1: Promise(spec=effect.event, sent=[900])})
    run = MessageReceived(chat_id=ALICE, message_id=20, text="run them", reply_to=900)
    assert ran(run, view).reply == "Running the 2 messages skipped while I was away: each gets its own answer."
    assert ran(msgspec.structs.replace(run, reply_to=901), view) is None  # not a reply to the summary
    assert ran(msgspec.structs.replace(run, text="run the tests"), view) is None


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

    told = [s for s in world.sent if "too old" in s.text]
    assert [(s.chat_id, s.reply_to) for s in told] == [(ALICE, old[-1].id)]  # Carol lost nothing
    assert told[0].text.startswith("While I was away you sent 5 messages between 3 Nov and 4 Nov that are too old")
    assert ('• old 0\n• old 1\n• old 2\n• … and 2 more\nReply "run them" to this message to run them all, '
            "or resend the ones you still want.") in told[0].text
    answered = {p.spec.message_id for p in state.promises.values() if p.spec.task == "respond"}
    assert fresh.id in answered and not answered & {m.id for m in old[:-1]}

    # "run them" in reply to the summary runs exactly the five, each answering its own message, once.
    run = await world.says(ALICE, ALICE, "Run them!", reply_to=told[0].id)
    again = await world.says(ALICE, ALICE, "run them", reply_to=told[0].id)  # asked twice: run once
    state, _ = await settle(engine, notifier, expect_respond=5 + 2 + 5)
    responds = Counter(p.spec.message_id for p in state.promises.values() if p.spec.task == "respond"
                       and ":skipped:" not in p.spec.request_id)  # the summary answers the newest old one too
    assert {m.id: responds[m.id] for m in old} == {m.id: 1 for m in old}
    assert responds[fresh.id] == 1 and responds[run.id] == 1 and responds[again.id] == 1
    for i, m in enumerate(old):  # answered as if just sent: the reply goes to the old message
        assert [s.text for s in world.sent if s.reply_to == m.id and s.chat_id == ALICE
                and not s.text.startswith("While I was away")] == [f"echo: old {i}"]
    assert len([s for s in world.sent if s.reply_to == run.id]) == 1  # its own answer (skipped.ran, shipped)
    await ingest.stop()
