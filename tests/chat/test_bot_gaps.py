"""A bot account's gap Telegram will not fill is told in each chat that may have lost messages, once (issue 15)."""

import asyncio
from datetime import UTC, datetime

from telethon import TelegramClient, functions, types
from telethon._updates.messagebox import ENTRY_ACCOUNT
from telethon.sessions import StringSession

from schemas.events import UpdatesGap
from services.executor.respond.gap import reply
from services.ingest.telegram import watch_gaps
from services.scheduler.intake import notice_for_gap
from services.scheduler.projection import Projection

from .conftest import ALICE, CAROL, GROUP, notices, settle, stored_messages

CHANNEL = 1234  # a channel's own id; its marked id is -100…1234


# --- Telethon: where it takes a "too long" difference -----------------------------------------------------


def _box():
    """The update state of a real (never connected) Telethon client, as it is while getting a difference."""
    client = TelegramClient(StringSession(), 1, "0" * 32, receive_updates=True)
    box = client._message_box
    box.set_state(types.updates.State(pts=10, qts=0, date=datetime(2026, 12, 1, tzinfo=UTC), seq=1, unread_count=0))
    box.try_set_channel_state(CHANNEL, 5)
    return client, box


async def test_telethon_taking_a_difference_too_long_reports_the_accounts_gap_and_a_channels():
    client, box = _box()
    reported, tasks = [], set()

    async def on_gap(chat_id):
        reported.append(chat_id)

    watch_gaps(box, on_gap, tasks)
    box.try_begin_get_diff(ENTRY_ACCOUNT, "test")
    assert box.apply_difference(types.updates.DifferenceTooLong(pts=500), client._mb_entity_cache) == ([], [], [])
    request = functions.updates.GetChannelDifferenceRequest(
        channel=types.InputChannel(CHANNEL, 0), filter=types.ChannelMessagesFilterEmpty(), pts=5, limit=100)
    box.try_begin_get_diff(CHANNEL, "test")
    dialog = types.Dialog(peer=types.PeerChannel(CHANNEL), top_message=1, read_inbox_max_id=0,
                          read_outbox_max_id=0, unread_count=0, unread_mentions_count=0,
                          unread_reactions_count=0, unread_poll_votes_count=0,
                          notify_settings=types.PeerNotifySettings(), pts=900)
    too_long = types.updates.ChannelDifferenceTooLong(dialog=dialog, messages=[], chats=[], users=[], final=True)
    box.apply_channel_difference(request, too_long, client._mb_entity_cache)
    empty = types.updates.ChannelDifferenceEmpty(pts=901, final=True)  # nothing missed: nothing reported
    box.try_begin_get_diff(CHANNEL, "test")
    box.apply_channel_difference(request, empty, client._mb_entity_cache)
    await asyncio.gather(*tasks)
    assert reported == [None, -1_000_000_000_000 - CHANNEL]
    assert box.map[CHANNEL].pts == 901  # Telethon's own handling went on as before


# --- the rules, with plain values ------------------------------------------------------------------------


def test_a_gap_becomes_one_respond_promise_per_chat_and_minute_answering_no_message():
    state = Projection()
    fact = UpdatesGap(chat_id=ALICE, until=1765110300.0)
    [effect] = notice_for_gap(state, fact, now=5.0, next_id=1)
    created = effect.event
    assert (created.task, created.chat_id, created.message_id, created.input["type"]) == (
        "respond", ALICE, 0, "updates_gap")
    state.apply(created)
    assert notice_for_gap(state, UpdatesGap(chat_id=ALICE, until=1765110310.0), now=6.0, next_id=2) == []
    assert notice_for_gap(state, UpdatesGap(chat_id=CAROL, until=1765110310.0), now=6.0, next_id=2)


def test_the_gap_reply_says_since_when_in_utc():
    assert reply(UpdatesGap(chat_id=ALICE, until=1765110300.0)).reply == (
        "I was offline; messages before 12:25 UTC (7 Dec) may not have reached me. Resend the ones you still want.")


# --- end to end ------------------------------------------------------------------------------------------


async def test_a_bot_told_of_a_gap_says_so_once_in_each_chat_it_knows_standing_alone(js, engine, world, services):
    world.bot = True
    world.user(ALICE, "alice", "Alice")
    world.user(CAROL, "carol", "Carol")
    world.group(-GROUP)
    start_ingest, start_notifier = services
    ingest = await start_ingest()
    notifier = await start_notifier()
    asked = [await world.says(ALICE, ALICE, "hello"), await world.says(GROUP, ALICE, "@valor hi", mentioned=True)]
    await settle(engine, notifier, expect_respond=2)
    assert "history" not in world.calls  # Telegram refuses bots history and the dialog list (the fake too)

    await world.reports_gap()  # the account's gap: Alice's chat and the group, not Carol (never wrote)
    await world.reports_gap()  # reported again (a restart within the minute): told once
    await world.reports_gap(-1_000_000_000_000 - CHANNEL)  # a channel's own gap: not allowed, not told
    state, events = await settle(engine, notifier, expect_respond=4)
    told = [s for s in world.sent if s.text.startswith("I was offline;")]
    assert sorted(s.chat_id for s in told) == sorted([ALICE, GROUP])
    assert all(s.reply_to is None for s in told)  # it answers no message
    assert len(world.reactions) == 2 * len(asked)  # 👀/✅ on the two requests only, nothing on a gap notice
    gaps = [m for m in await stored_messages(js) if isinstance(m, UpdatesGap)]
    assert sorted(m.chat_id for m in gaps) == sorted([ALICE, GROUP])
    assert len(notices(events, "terminal")) == 4
    await ingest.stop()


async def test_a_user_account_reads_history_instead_and_tells_nothing(js, world, services):
    world.user(ALICE, "alice", "Alice")
    await world.says(ALICE, ALICE, "hello")
    start_ingest, _ = services
    ingest = await start_ingest()
    assert await ingest.on_gap(None) == 0
    assert not [m for m in await stored_messages(js) if isinstance(m, UpdatesGap)]
