"""Ingest: who is heard, and that nothing sent to Valor is missed or doubled."""

import asyncio
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from prometheus_client import REGISTRY
from telethon import types

from schemas.events import MessageReceived, MessagesSkipped
from services.ingest.accept import Rules, accept, skipped
from services.ingest.service import BUCKET, Ingest

from .conftest import ALICE, CAROL, CONFIG, GROUP, OTHER_GROUP, STRANGER, WORK_GROUP, stored_messages
from .fake_telegram import FakeTelegram


@pytest.fixture
def people(world):
    world.user(ALICE, "alice", "Alice")
    world.user(CAROL, "Carol", "Carol")  # allowed by username, case-insensitively
    world.user(STRANGER, "mallory", "Mallory")
    for gid in (GROUP, WORK_GROUP, OTHER_GROUP):
        world.group(-gid)
    return world


RULES = Rules.from_config(CONFIG)


def verdict(world: FakeTelegram, chat, sender, text="", **kw):
    message, _ = world.say(chat, sender, text, **kw)
    result = accept(message, world.me, RULES)
    return result if isinstance(result, str) else "accepted"


@pytest.mark.parametrize("chat, sender, text, kw, expected", [
    (ALICE, ALICE, "hi", {}, "accepted"),
    (CAROL, CAROL, "hi", {}, "accepted"),
    (STRANGER, STRANGER, "hi", {}, f"sender {STRANGER} not allowed"),
    (GROUP, ALICE, "just chatting", {}, "not mentioned"),
    (GROUP, ALICE, "hey @valor look", {}, "accepted"),
    (GROUP, ALICE, "Valor, look", {}, "accepted"),  # a configured mention name
    (GROUP, ALICE, "replying to you", {"mentioned": True}, "accepted"),  # Telegram flags replies to us
    (GROUP, STRANGER, "@valor do it", {}, f"sender {STRANGER} not allowed"),
    (WORK_GROUP, ALICE, "no mention needed", {}, "accepted"),
    (OTHER_GROUP, ALICE, "@valor hello", {}, f"chat {OTHER_GROUP} not allowed"),
    (ALICE, ALICE, "", {"service": True}, "service message"),
])
def test_group_mention_rule_and_allowlists(people, chat, sender, text, kw, expected):
    assert verdict(people, chat, sender, text, **kw) == expected


def test_own_messages_are_ignored(people):
    message, _ = people.say(ALICE, people.me.id, "I said this")
    assert accept(message, people.me, RULES) == "own message"


def test_media_without_text_gets_a_placeholder_and_media_keeps_its_caption(people):
    photo, _ = people.say(ALICE, ALICE, "", media=types.MessageMediaPhoto())
    captioned, _ = people.say(ALICE, ALICE, "look at this", media=types.MessageMediaPhoto())
    assert accept(photo, people.me, RULES).text == "[photo]"
    assert accept(captioned, people.me, RULES).text == "[photo] look at this"


def test_accepted_message_carries_the_facts(people):
    message, _ = people.say(GROUP, ALICE, "@valor run the tests", reply_to=5)
    got = accept(message, people.me, RULES, caught_up=True)
    assert (got.chat_id, got.message_id, got.sender_id, got.sender_name) == (GROUP, message.id, ALICE, "Alice")
    assert (got.chat_kind, got.mentioned, got.caught_up, got.reply_to) == ("group", True, True, 5)


async def test_an_unauthorized_sender_is_never_acted_on(js, people, services):
    start_ingest, _ = services
    ingest = await start_ingest()
    await people.says(STRANGER, STRANGER, "rm -rf /")
    await people.says(GROUP, STRANGER, "@valor rm -rf /")
    await people.says(OTHER_GROUP, ALICE, "@valor hi")
    assert await ingest.reconcile() == 0  # history does not let them in either
    assert await stored_messages(js) == []


async def test_a_gap_telethon_skipped_is_filled_by_the_backfill(js, people, services):
    start_ingest, _ = services
    await people.says(ALICE, ALICE, "before start")
    ingest = await start_ingest()
    await people.says(ALICE, ALICE, "one")
    people.skip_live = True  # Telethon gave up on these ("too long" a gap)
    m2 = await people.says(ALICE, ALICE, "two")
    m3 = await people.says(ALICE, ALICE, "three")
    people.skip_live = False
    await people.says(ALICE, ALICE, "four")
    caught_up_before = REGISTRY.get_sample_value("valor_ingest_messages_total", {"source": "caught_up"}) or 0
    assert [m.text for m in await stored_messages(js, ALICE)] == ["before start", "one", "four"]
    assert await ingest.reconcile() == 2
    stored = await stored_messages(js, ALICE)
    assert sorted(m.text for m in stored) == ["before start", "four", "one", "three", "two"]
    assert {m.message_id for m in stored if m.caught_up} >= {m2.id, m3.id}
    assert REGISTRY.get_sample_value("valor_ingest_messages_total", {"source": "caught_up"}) - caught_up_before == 2
    assert await ingest.reconcile() == 0  # nothing new, nothing doubled


async def test_overlapping_catch_up_and_backfill_yield_one_message(js, people, services):
    start_ingest, _ = services
    people.online = False
    missed, _ = people.say(ALICE, ALICE, "sent while Valor was down")
    people.online = True
    ingest = Ingest(js._nc, people.inbound(), CONFIG)
    await ingest.start(reconcile_forever=False)  # the backfill reads it...
    event = people._event(missed)
    await asyncio.gather(people.deliver(event), ingest.reconcile(), people.deliver(event))  # ...and catch-up too
    stored = await stored_messages(js, ALICE)
    assert [m.message_id for m in stored] == [missed.id]
    assert stored[0].caught_up
    await ingest.stop()


async def test_a_deletion_arriving_while_its_message_is_read_from_history_is_stored_after_it(js, people):
    """Seen in the chaos run: ingest, restarted, read a missed message from history; its user deleted
    it before that page was stored, and the live deletion went into CHAT first, so the scheduler
    found no request to cancel and the message then ran as sent."""
    people.online = False
    missed, _ = people.say(ALICE, ALICE, "sent while Valor was down")
    people.online = True
    ingest = Ingest(js._nc, people.inbound(), CONFIG)
    page_read, store = asyncio.Event(), asyncio.Event()
    publish_many = ingest.publish_many

    async def slow_store(msgs):  # the page is read; its store is slow (an election, a busy node)
        page_read.set()
        await store.wait()
        return await publish_many(msgs)

    ingest.publish_many = slow_store
    starting = asyncio.create_task(ingest.start(reconcile_forever=False))  # its first catch-up reads the page
    await page_read.wait()
    deleting = asyncio.create_task(people.deletes(ALICE, [missed.id], chat_known=False))
    await asyncio.wait({deleting}, timeout=0.5)  # time for a deletion that does not wait to be stored
    store.set()
    await asyncio.gather(starting, deleting)
    assert [type(m).__name__ for m in await stored_messages(js)] == ["MessageReceived", "MessageDeleted"]
    await ingest.stop()


async def test_messages_older_than_the_horizon_are_not_caught_up(js, people, services):
    start_ingest, _ = services
    people.online = False
    old = datetime.now(UTC) - timedelta(days=8)
    people.say(ALICE, ALICE, "last week's news", when=old)
    people.say(ALICE, ALICE, "fresh")
    people.online = True
    await start_ingest()
    assert [m.text for m in await stored_messages(js, ALICE)] == ["fresh"]


def test_a_skipped_range_is_summed_up_with_its_first_texts_cut_short():
    def msg(i, text):
        return MessageReceived(chat_id=ALICE, message_id=i, text=text, sent_at=1000.0 + i)

    assert skipped([], 7 * 86400) is None
    summary = skipped([msg(9, "last"), msg(3, "first " + "x" * 300), msg(5, "second"), msg(7, "third")], 60.0)
    assert (summary.chat_id, summary.count, summary.first_id, summary.last_id) == (ALICE, 4, 3, 9)
    assert (summary.oldest, summary.newest, summary.horizon) == (1003.0, 1009.0, 60.0)
    assert summary.texts[1:] == ["second", "third"]
    assert summary.texts[0].startswith("first x") and summary.texts[0].endswith("…") and len(summary.texts[0]) == 120


def summaries(stored):
    return [m for m in stored if isinstance(m, MessagesSkipped)]


async def test_an_eight_day_outage_stores_one_summary_per_chat_once_across_two_catch_ups(js, people, services):
    start_ingest, _ = services
    await people.says(ALICE, ALICE, "before the outage")
    await people.says(CAROL, CAROL, "before the outage")
    await people.says(GROUP, ALICE, "@valor before the outage")
    ingest = await start_ingest()  # every chat has a cursor now
    await ingest.stop()
    people.online = False
    days_ago = datetime.now(UTC) - timedelta(days=9)
    old_alice = [people.say(ALICE, ALICE, f"old {i}", when=days_ago + timedelta(hours=i))[0] for i in range(4)]
    people.say(GROUP, ALICE, "old chatter, not to the bot", when=days_ago)
    old_group, _ = people.say(GROUP, ALICE, "@valor old", when=days_ago + timedelta(days=1))
    people.say(ALICE, ALICE, "fresh")
    people.say(CAROL, CAROL, "fresh")  # Carol lost nothing: no summary
    people.online = True
    await start_ingest()

    told = summaries(await stored_messages(js))
    assert sorted((s.chat_id, s.count, s.first_id, s.last_id) for s in told) == [
        (GROUP, 1, old_group.id, old_group.id), (ALICE, 4, old_alice[0].id, old_alice[-1].id)]
    alice = next(s for s in told if s.chat_id == ALICE)
    assert (alice.oldest, alice.newest) == (old_alice[0].date.timestamp(), old_alice[-1].date.timestamp())
    assert alice.texts == ["old 0", "old 1", "old 2"]
    assert [m.text for m in await stored_messages(js, ALICE) if isinstance(m, MessageReceived)] == [
        "before the outage", "fresh"]  # the old ones are told, never acted on

    # A second catch-up over the same range (killed before its cursors were stored) stores nothing new.
    kv = await js.key_value(BUCKET)
    for chat in (ALICE, GROUP):
        await kv.put(str(chat), str(min(m.id for m in people.history[chat])).encode())
    again = await start_ingest()
    assert await again.reconcile() == 0
    assert summaries(await stored_messages(js)) == told


async def test_a_summary_waits_for_the_old_messages_of_every_capped_page(js, people, services):
    start_ingest, _ = services
    await people.says(ALICE, ALICE, "before the outage")
    await (await start_ingest()).stop()
    people.online = False
    days_ago = datetime.now(UTC) - timedelta(days=8)
    for i in range(5):
        people.say(ALICE, ALICE, f"old {i}", when=days_ago + timedelta(minutes=i))
    people.online = True
    capped = msgspec.structs.replace(CONFIG, telegram=msgspec.structs.replace(CONFIG.telegram, catchup_limit=2))
    ingest = Ingest(js._nc, people.inbound(), capped)
    await ingest.start(reconcile_forever=False)
    await ingest.stop()
    assert [(s.count, s.texts[0]) for s in summaries(await stored_messages(js, ALICE))] == [(5, "old 0")]


async def test_flood_waits_and_disconnects_in_catch_up_are_waited_out(js, people, services):
    start_ingest, _ = services
    people.online = False
    for i in range(3):
        people.say(ALICE, ALICE, f"missed {i}")
    people.online = True
    people.floods["history"] = [42]
    slept = []

    async def sleep(seconds):
        slept.append(seconds)
        people.online = True  # the connection comes back while we wait
        await asyncio.sleep(0)

    ingest = await start_ingest(sleep=sleep)
    people.online = False  # a disconnect in the middle of a reconcile
    task = asyncio.create_task(ingest.reconcile())
    await asyncio.sleep(0.05)
    await task
    assert [m.text for m in await stored_messages(js, ALICE)] == ["missed 0", "missed 1", "missed 2"]
    assert 43 in slept and len(slept) >= 2


async def test_a_capped_read_continues_where_it_stopped(js, people, services):
    start_ingest, _ = services
    people.online = False
    for i in range(7):
        people.say(ALICE, ALICE, f"m{i}")
    people.online = True
    import msgspec

    config = msgspec.structs.replace(CONFIG, telegram=msgspec.structs.replace(CONFIG.telegram, catchup_limit=3))
    ingest = Ingest(js._nc, people.inbound(), config)
    await ingest.start(reconcile_forever=False)
    assert [m.text for m in await stored_messages(js, ALICE)] == [f"m{i}" for i in range(7)]
    await ingest.stop()


async def test_a_bot_account_gets_live_messages_and_no_backfill(js, people, services):
    start_ingest, _ = services
    people.bot = True
    people.online = False
    people.say(ALICE, ALICE, "missed while down")
    people.online = True
    ingest = await start_ingest()
    await people.says(ALICE, ALICE, "live")
    assert ingest.bot and "history" not in people.calls
    assert [m.text for m in await stored_messages(js, ALICE)] == ["live"]


async def test_many_chats_are_caught_up_at_once_in_order_and_a_flood_wait_holds_every_reader(js, world, services):
    import msgspec

    users = list(range(7001, 7013))
    for user in users:
        world.user(user, f"u{user}", f"U{user}")
    world.online = False
    for i in range(5):
        for user in users:
            world.say(user, user, f"{user} #{i}")
    world.online = True
    world.floods["history"] = [30]
    slept = []

    async def sleep(seconds):
        slept.append(seconds)
        await asyncio.sleep(0)

    telegram = msgspec.structs.replace(CONFIG.telegram, allow_users=users)
    ingest = Ingest(js._nc, world.inbound(), msgspec.structs.replace(CONFIG, telegram=telegram), sleep=sleep)
    await ingest.start(reconcile_forever=False)
    for user in users:  # each chat stored whole, once, in its order
        assert [m.text for m in await stored_messages(js, user)] == [f"{user} #{i}" for i in range(5)]
    assert ingest.published == 60 and await ingest.reconcile() == 0
    # The reader that met the flood wait waited it out, and it held every other read (one account):
    # time stands still here, so each chat's read waited for it before calling Telegram.
    assert 31 in slept and sum(1 for s in slept if 25 < s < 31) >= len(users)
    await ingest.stop()
