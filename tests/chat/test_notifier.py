"""The notifier: every loop a chat opened is closed, once, within Telegram's limits."""

import asyncio
from collections import Counter

import pytest
from prometheus_client import REGISTRY

from schemas.events import Created, Started, Succeeded
from services.notifier import texts
from services.notifier.board import Board
from services.notifier.outbox import Outbox
from services.notifier.plan import Edit, React, Send, due

from .conftest import (
    ALICE,
    CAROL,
    CONFIG,
    GROUP,
    dies_before_recording,
    intents,
    notices,
    settle,
    stored_messages,
)


@pytest.fixture
def people(world):
    world.user(ALICE, "alice", "Alice")
    world.group(-GROUP)
    return world


def replies_to(world, chat_id, message_id):
    return [s for s in world.sent if s.chat_id == chat_id and s.reply_to == message_id]


async def test_every_promise_or_plan_born_from_a_chat_gets_exactly_one_terminal_reply(js, engine, people, services):
    start_ingest, start_notifier = services
    await start_ingest()
    notifier = await start_notifier()
    asked = [await people.says(ALICE, ALICE, text) for text in
             ("hello", "/do build it", "/chain", "/broken", "/sleep")]
    state, events = await settle(engine, notifier, expect_respond=5)
    chat_born = [p for p in state.promises.values() if p.spec.chat_id == ALICE]
    assert len(chat_born) == 5 + 1 + 3 + 1
    by_message = {m.id: [p for p in chat_born if p.spec.message_id == m.id] for m in asked}
    chain = next(p for p in by_message[asked[2].id] if p.spec.task == "respond")
    assert set(chain.children) == {"one", "two", "three"}
    steps = set(chain.children.values())
    terminal = Counter(e.id for e in notices(events, "terminal"))
    assert terminal == {p.id: 1 for p in chat_born if p.id not in steps}  # the plan's steps: its final reply
    assert Counter(e.id for e in notices(events, "final")) == {chain.id: 1}
    for message in asked:  # one reply per promise of that request, all replying to the request
        replies = replies_to(people, ALICE, message.id)
        if message is asked[2]:  # the plan: its reply (the checklist) and its final reply
            assert len(replies) == 2
            continue
        assert len(replies) == len(by_message[message.id]) + sum(
            1 for p in by_message[message.id] if "status" in {e.kind for e in notices(events) if e.id == p.id})
    texts_sent = "\n".join(s.text for s in people.sent)
    assert f"two #{chain.children['two']}" in texts_sent  # the plan's messages name the real ids
    assert f"❌ 2. two #{chain.children['two']}" in texts_sent
    assert f"🚫 3. three #{chain.children['three']}" in texts_sent
    assert "❌ I could not answer this" in texts_sent
    reactions = {(m, e) for _, m, e in people.reactions}
    assert (asked[0].id, "✅") in reactions and (asked[2].id, "❌") in reactions and (asked[3].id, "❌") in reactions
    # 👀 shows while a respond promise runs; one the notifier only saw ended goes straight to ✅/❌.
    assert {m for m, e in reactions if e in ("✅", "❌")} == {m.id for m in asked}
    assert {m for m, e in reactions if e == "👀"} <= {m.id for m in asked}


async def test_a_request_shows_eyes_while_its_answer_is_made_then_a_check(js, engine, people, services):
    start_ingest, start_notifier = services
    await start_ingest()
    notifier = await start_notifier()
    asked = await people.says(ALICE, ALICE, "/think")
    await settle(engine, notifier, expect_respond=1)
    assert [e for _, m, e in people.reactions if m == asked.id] == ["👀", "✅"]


async def test_the_respond_reply_is_sent_after_spawned_and_names_the_real_ids(js, engine, people, services):
    start_ingest, start_notifier = services
    await start_ingest()
    notifier = await start_notifier()
    message = await people.says(ALICE, ALICE, "/do the thing")
    state, _ = await settle(engine, notifier, expect_respond=1)
    respond = next(p for p in state.promises.values() if p.spec.task == "respond")
    reply = next(s for s in people.sent if s.text.startswith("On it."))
    assert reply.reply_to == message.id
    assert f"#{respond.children['job']} job" in reply.text


async def test_a_background_promise_has_one_status_message_edited_in_place(js, engine, people, services):
    start_ingest, start_notifier = services
    await start_ingest()
    notifier = await start_notifier()
    await people.says(ALICE, ALICE, "/sleep")
    state, events = await settle(engine, notifier, expect_respond=1)
    nap = next(p for p in state.promises.values() if p.spec.name == "nap")
    [status] = [e for e in notices(events, "status") if e.id == nap.id]
    edits = [t for c, m, t in people.edits if m == status.telegram_message_id]
    assert edits and edits[-1].startswith(f"✅ #{nap.id}")
    assert len([s for s in people.sent if s.text.startswith(f"⏳ #{nap.id}")]) == 1


async def test_ten_thousand_characters_arrive_as_three_messages(js, engine, people, services):
    start_ingest, start_notifier = services
    await start_ingest()
    notifier = await start_notifier()
    message = await people.says(ALICE, ALICE, "/long")
    await settle(engine, notifier, expect_respond=1)
    parts = replies_to(people, ALICE, message.id)
    assert [len(p.text) for p in parts] == [4096, 4096, 1808]
    assert "".join(p.text for p in parts) == "y" * 10_000


def test_split_prefers_line_breaks_and_never_exceeds_the_limit():
    text = ("a" * 3000 + "\n") * 4
    parts = texts.split(text)
    assert all(len(p) <= 4096 for p in parts) and "".join(parts) == text
    assert all(p.endswith("\n") for p in parts)
    assert texts.split("") == [""]


async def test_a_notifier_killed_between_send_and_record_does_not_send_twice(js, engine, people, services):
    start_ingest, start_notifier = services
    await start_ingest()
    # Sent, never recorded: the notifier "dies" there.
    killed, die_before_recording = dies_before_recording("terminal")
    first = await start_notifier(record_hook=die_before_recording)
    message = await people.says(ALICE, ALICE, "/long")
    await asyncio.wait_for(killed.wait(), 20)
    await first.stop()
    assert len(replies_to(people, ALICE, message.id)) == 3  # sent, not recorded
    second = await start_notifier()
    _, events = await settle(engine, second, expect_respond=1)
    assert len(replies_to(people, ALICE, message.id)) == 3  # found, not sent again
    assert second.outbox.stats["reconciled"] == 3 and second.outbox.stats["sent"] == 0
    assert len(notices(events, "terminal")) == 1 and len(intents(events)) == 1


async def test_a_notifier_killed_mid_way_through_a_long_message_sends_only_the_rest(js, engine, people, services):
    start_ingest, start_notifier = services
    await start_ingest()
    people.floods["send"] = []
    sends = 0
    original = people.transport

    def crashing_transport():
        t = original()
        real_send = t.send

        async def send(chat_id, text, reply_to):
            nonlocal sends
            sends += 1
            if sends == 2:
                raise asyncio.CancelledError  # the process dies after the first part
            return await real_send(chat_id, text, reply_to)

        t.send = send
        return t

    people.transport = crashing_transport
    first = await start_notifier()
    message = await people.says(ALICE, ALICE, "/long")
    for _ in range(200):
        if sends >= 2:
            break
        await asyncio.sleep(0.05)
    await first.stop()
    people.transport = original
    assert len(replies_to(people, ALICE, message.id)) == 1
    second = await start_notifier()
    await settle(engine, second, expect_respond=1)
    parts = replies_to(people, ALICE, message.id)
    assert "".join(p.text for p in parts) == "y" * 10_000 and len(parts) == 3


async def test_a_flood_wait_delays_but_loses_nothing(js, engine, people, services):
    start_ingest, start_notifier = services
    await start_ingest()
    slept = []

    async def sleep(seconds):
        slept.append(seconds)
        await asyncio.sleep(0)

    people.floods["send"] = [30, 12]
    people.floods["react"] = [5]
    waits_before = REGISTRY.get_sample_value("valor_notifier_flood_waits_total") or 0
    notifier = await start_notifier(sleep=sleep)
    asked = [await people.says(ALICE, ALICE, f"hello {i}") for i in range(3)]
    _, events = await settle(engine, notifier, expect_respond=3)
    assert 31 in slept and 13 in slept and 6 in slept
    for message in asked:
        assert [s.text for s in replies_to(people, ALICE, message.id)] == [f"echo: hello {asked.index(message)}"]
    assert notifier.outbox.stats["flood_waits"] == 3
    assert REGISTRY.get_sample_value("valor_notifier_flood_waits_total") - waits_before == 3


async def test_an_error_in_one_chat_does_not_stall_the_others(js, engine, people, services):
    start_ingest, start_notifier = services
    await start_ingest()
    slept = asyncio.Event()

    async def sleep(seconds):
        if seconds > 100:
            await slept.wait()  # the flooded chat waits "an hour"
        await asyncio.sleep(0)

    people.floods["send"] = [3600]
    notifier = await start_notifier(sleep=sleep)
    await people.says(ALICE, ALICE, "first, flooded")
    for _ in range(100):
        if notifier.outbox.stats["flood_waits"]:
            break
        await asyncio.sleep(0.05)
    group_msg = await people.says(GROUP, ALICE, "@valor and me?")
    for _ in range(200):
        if replies_to(people, GROUP, group_msg.id):
            break
        await asyncio.sleep(0.05)
    assert replies_to(people, GROUP, group_msg.id) and not people.messages_to(ALICE)
    slept.set()
    await settle(engine, notifier, expect_respond=2)
    assert len(people.messages_to(ALICE)) == 1


async def test_a_respond_promise_of_an_unknown_type_still_gets_one_failure_notice(nc, js, people, services):
    """The agent not wired yet: the executor has no respond handler."""
    from services.executor.worker import Executor
    from services.scheduler.service import Scheduler
    from valor.client import ValorClient

    scheduler = Scheduler(nc, config=CONFIG)
    executor = Executor(nc, ["default", "respond"], slots=2, executor_id="bare", ack_wait=5,
                        handlers={"respond": None})
    executor.handlers.pop("respond")
    await executor.start()
    await scheduler.start()
    try:
        start_ingest, start_notifier = services
        await start_ingest()
        notifier = await start_notifier()
        message = await people.says(ALICE, ALICE, "/help")
        _, events = await settle(ValorClient(nc), notifier, expect_respond=1)
        [reply] = replies_to(people, ALICE, message.id)
        assert reply.text.startswith("❌ I could not answer this") and "unknown task type 'respond'" in reply.text
        assert (ALICE, message.id, "❌") in people.reactions
    finally:
        await scheduler.stop()
        await executor.stop(grace=1)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def test_edits_of_one_message_are_at_least_three_seconds_apart_and_coalesce(people):
    import msgspec

    clock = Clock()
    edited_at = []
    transport = people.transport()
    real_edit = transport.edit

    async def edit(chat_id, message_id, text):
        edited_at.append((clock.now, text))
        await real_edit(chat_id, message_id, text)

    transport.edit = edit

    async def record(event, msg_id):
        pass

    limits = msgspec.structs.replace(CONFIG.telegram, edit_interval=3.0, chat_interval=1.0)
    outbox = Outbox(transport, record, limits, clock, clock.sleep)
    for i in range(10):
        outbox.submit(Edit(7, ALICE, 55, f"progress {i}"))
        await asyncio.sleep(0)
    while not outbox.idle():
        await asyncio.sleep(0.01)
    outbox.submit(Edit(7, ALICE, 55, "progress 10"))
    while not outbox.idle():
        await asyncio.sleep(0.01)
    times = [t for t, _ in edited_at]
    assert all(b - a >= 3.0 for a, b in zip(times, times[1:], strict=False))
    assert edited_at[-1][1] == "progress 10" and len(edited_at) < 11  # intermediate edits were coalesced
    await outbox.stop()


async def test_a_group_gets_at_most_twenty_messages_a_minute(people):
    clock = Clock()
    sent_at = []
    transport = people.transport()
    real_send = transport.send

    async def send(chat_id, text, reply_to):
        sent_at.append(clock.now)
        return await real_send(chat_id, text, reply_to)

    transport.send = send

    async def record(event, msg_id):
        pass

    import msgspec

    limits = msgspec.structs.replace(CONFIG.telegram, chat_interval=1.0, group_per_minute=20)
    outbox = Outbox(transport, record, limits, clock, clock.sleep)
    for i in range(45):
        outbox.submit(Send(i, "terminal", GROUP, 1, f"done {i}"))
    while not outbox.idle():
        await asyncio.sleep(0.01)
    assert len(sent_at) == 45
    assert all(b - a >= 1.0 for a, b in zip(sent_at, sent_at[1:], strict=False))
    assert all(sum(1 for t in sent_at if start <= t < start + 60) <= 20 for start in sent_at)
    await outbox.stop()


async def test_stored_messages_helper_reads_nothing_from_an_empty_stream(js):
    assert await stored_messages(js) == []


# --- pacing: messages and cosmetic actions (reactions, edits) in lanes of their own ------------


class VirtualTime:
    """Time that moves only when every task waits: to the earliest sleeper, which it wakes."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleepers: list[tuple[float, int, asyncio.Future]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        self.sleepers.append((self.now + max(seconds, 0.0), len(self.sleepers), future))
        await future

    async def run(self, outbox: Outbox, limit: float = 600.0) -> None:
        """Until the outbox is idle; fails if it waits for something that never comes."""
        while True:
            for _ in range(50):
                await asyncio.sleep(0)
            if outbox.idle():
                return
            assert self.sleepers, "the outbox waits, but on no timer"
            self.sleepers.sort(key=lambda s: (s[0], s[1]))
            at, _, future = self.sleepers.pop(0)
            assert at - 1000.0 <= limit, "virtual time ran away"
            self.now = max(self.now, at)
            future.set_result(None)


def paced_outbox(world, **limits):
    """An outbox on the fake with virtual time; ``log`` lists (time, call, chat, detail) in call order.

    The detail of a send is the message it replies to; of an edit or a reaction, the message it changes.
    """
    import msgspec

    time_ = VirtualTime()
    transport = world.transport()
    log = []
    for name in ("send", "edit", "react"):
        real = getattr(transport, name)

        async def call(chat_id, message_id_or_text, arg, real=real, name=name):
            log.append((time_.now, name, chat_id, arg if name == "send" else message_id_or_text))
            return await real(chat_id, message_id_or_text, arg)

        setattr(transport, name, call)

    async def record(event, msg_id):
        pass

    outbox = Outbox(transport, record, msgspec.structs.replace(CONFIG.telegram, **limits), time_, time_.sleep)
    return outbox, time_, log


async def test_reply_is_not_held_back_by_its_reaction(people):
    outbox, time_, log = paced_outbox(people, chat_interval=1.0)
    outbox.submit(React(1, "reaction_start", ALICE, 10, "👀"))
    await asyncio.sleep(0)
    outbox.submit(Send(1, "terminal", ALICE, 10, "the help text"))
    await time_.run(outbox)
    assert [(t, call) for t, call, _, _ in log] == [(1000.0, "react"), (1000.0, "send")]
    await outbox.stop()


async def test_two_messages_in_a_row_are_still_paced(people):
    outbox, time_, log = paced_outbox(people, chat_interval=1.0)
    outbox.submit(React(1, "reaction_start", ALICE, 10, "👀"))
    for i, message in enumerate((10, 11, 12)):
        outbox.submit(Send(i + 1, "terminal", ALICE, message, f"reply {i}"))
        outbox.submit(Send(i + 10, "terminal", CAROL, message, f"elsewhere {i}"))
    await time_.run(outbox)
    for chat in (ALICE, CAROL):  # one message a second in a chat, as before; chats apart
        assert [(t, m) for t, call, c, m in log if call == "send" and c == chat] == [
            (1000.0, 10), (1001.0, 11), (1002.0, 12)]
    await outbox.stop()


def test_only_the_replies_of_respond_promises_are_answers():
    board = Board()
    for seq, event in enumerate([
        Created(at=1.0, id=1, title="/status", task="respond", chat_id=ALICE, message_id=10),
        Succeeded(at=1.1, id=1, attempt=1, result={"reply": "2 open"}),
        Created(at=1.0, id=2, title="sleep", task="sleep", chat_id=ALICE, message_id=9),
        Started(at=1.0, id=2, attempt=1, executor="x"),
        Created(at=1.0, id=3, title="echo", task="echo", chat_id=ALICE, message_id=9),
        Succeeded(at=1.2, id=3, attempt=1, result="done"),
    ], 1):
        board.apply(event, seq)
    sends = {(a.id, a.kind): a.answer for i in (1, 2, 3) for a in due(board, board.items[i], 2.0, 60.0)
             if isinstance(a, Send)}
    assert sends == {(1, "terminal"): True, (2, "status"): False, (3, "terminal"): False}


async def test_an_answer_goes_before_the_background_notices_waiting_in_its_chat(people):
    outbox, time_, log = paced_outbox(people, chat_interval=1.0)
    for i in range(5):  # a plan's steps ending together: five results to send, one a second
        outbox.submit(Send(20 + i, "terminal", ALICE, 9, f"step {i} done"))
    await asyncio.sleep(0)
    outbox.submit(Send(30, "terminal", ALICE, 10, "3 open: ...", answer=True))  # the reply to /status
    outbox.submit(Send(31, "terminal", ALICE, 11, "Cancelling #22.", answer=True))
    await time_.run(outbox)
    sends = [(t, m) for t, call, _, m in log if call == "send"]
    # The first result was already going out; then the answers, in their order; then the other results.
    assert sends == [(1000.0, 9), (1001.0, 10), (1002.0, 11), (1003.0, 9), (1004.0, 9), (1005.0, 9), (1006.0, 9)]
    await outbox.stop()


async def test_reactions_in_a_chat_are_paced_among_themselves(people):
    outbox, time_, log = paced_outbox(people, chat_interval=1.0)
    for message in (10, 11, 12):
        outbox.submit(React(message, "reaction_start", ALICE, message, "👀"))
    await time_.run(outbox)
    assert [t for t, call, _, _ in log] == [1000.0, 1001.0, 1002.0]
    await outbox.stop()


async def test_a_check_mark_waits_for_the_reply_it_marks(people):
    outbox, time_, log = paced_outbox(people, chat_interval=1.0)
    outbox.submit(Send(1, "terminal", ALICE, 9, "an earlier answer"))
    await asyncio.sleep(0)
    outbox.submit(Send(2, "terminal", ALICE, 10, "the answer"))  # paced: one second after the first
    outbox.submit(React(2, "reaction_end", ALICE, 10, "✅"))  # free to go at once, but marks the answer
    await time_.run(outbox)
    assert [(t, call, m) for t, call, _, m in log] == [
        (1000.0, "send", 9), (1001.0, "send", 10), (1001.0, "react", 10)]
    await outbox.stop()


async def test_status_edits_do_not_hold_back_messages(people):
    outbox, time_, log = paced_outbox(people, chat_interval=1.0, edit_interval=3.0)
    for i in range(3):
        outbox.submit(Edit(7, ALICE, 55, f"progress {i}"))
        await asyncio.sleep(0)
        outbox.submit(Send(20 + i, "terminal", ALICE, 30 + i, f"done {i}"))
    await time_.run(outbox)
    sends = [t for t, call, _, _ in log if call == "send"]
    edits = [t for t, call, _, _ in log if call == "edit"]
    assert sends == [1000.0, 1001.0, 1002.0]
    assert edits[0] == 1000.0 and all(b - a >= 3.0 for a, b in zip(edits, edits[1:], strict=False))
    assert people.edits[-1][2] == "progress 2"
    await outbox.stop()


async def test_a_flood_wait_on_a_reaction_holds_back_reactions_only(people):
    people.floods["react"] = [30]
    outbox, time_, log = paced_outbox(people, chat_interval=1.0)
    outbox.submit(React(1, "reaction_start", ALICE, 10, "👀"))
    await asyncio.sleep(0)
    outbox.submit(Send(1, "terminal", ALICE, 10, "the answer"))
    outbox.submit(Send(2, "terminal", ALICE, 11, "another"))
    await time_.run(outbox)
    assert [(t, call) for t, call, _, _ in log] == [
        (1000.0, "react"), (1000.0, "send"), (1001.0, "send"), (1031.0, "react")]  # the wait, plus a second
    assert people.reactions == [(ALICE, 10, "👀")] and outbox.stats["flood_waits"] == 1
    await outbox.stop()


async def test_a_flood_wait_on_a_message_is_honoured_in_its_chat(people):
    people.floods["send"] = [12]
    outbox, time_, log = paced_outbox(people, chat_interval=1.0)
    outbox.submit(Send(1, "terminal", ALICE, 10, "first"))
    outbox.submit(Send(2, "terminal", ALICE, 11, "second"))
    outbox.submit(React(3, "reaction_start", ALICE, 12, "👀"))
    await time_.run(outbox)
    assert [(t, call) for t, call, _, _ in log] == [
        (1000.0, "send"), (1000.0, "react"), (1013.0, "send"), (1014.0, "send")]
    assert [s.text for s in people.sent] == ["first", "second"]
    await outbox.stop()


def second_send_fails(outbox, error: Exception, after_sending: bool) -> None:
    """The outbox's second send raises ``error``, before the message is sent or after it arrived."""
    calls = 0
    send = outbox.transport.send

    async def failing(chat_id, text, reply_to):
        nonlocal calls
        calls += 1
        if calls == 2 and not after_sending:
            raise error
        message_id = await send(chat_id, text, reply_to)
        if calls == 2:
            raise error
        return message_id

    outbox.transport.send = failing


async def test_a_flood_wait_in_the_middle_of_a_long_message_sends_each_part_once(people):
    from telethon.errors import FloodWaitError

    outbox, time_, log = paced_outbox(people, chat_interval=1.0)
    second_send_fails(outbox, FloodWaitError(request=None, capture=5), after_sending=False)
    outbox.submit(Send(1, "terminal", ALICE, 10, "y" * 10_000))
    await time_.run(outbox)
    assert [len(s.text) for s in people.sent] == [4096, 4096, 1808]
    assert [t for t, call, _, _ in log] == [1000.0, 1007.0, 1008.0]  # part 2 paced to 1001, flooded 5+1 s
    await outbox.stop()


async def test_a_part_that_arrived_before_its_call_failed_is_not_sent_again(people):
    outbox, time_, log = paced_outbox(people, chat_interval=1.0)
    second_send_fails(outbox, ConnectionError("the answer was lost on the way back"), after_sending=True)
    outbox.submit(Send(1, "terminal", ALICE, 10, "y" * 10_000))
    await time_.run(outbox)
    assert [len(s.text) for s in people.sent] == [4096, 4096, 1808]
    assert outbox.stats["reconciled"] == 1
    await outbox.stop()


async def test_an_intended_message_whose_text_changed_since_is_found_by_the_text_it_was_sent_with(people):
    """A checklist sent just before a crash shows older text than the one planned after the restart."""
    outbox, time_, log = paced_outbox(people, chat_interval=1.0)
    recorded = []

    async def record(event, msg_id):
        recorded.append(event)

    outbox.record = record
    first = await people.transport().send(ALICE, "⏳ 1. setup #2 — running", 10)
    outbox.submit(Send(1, "terminal", ALICE, 10, "✅ 1. setup #2 — 1.0s", intended=True,
                       recorded=(texts.digest("⏳ 1. setup #2 — running"),)))
    outbox.submit(Send(3, "terminal", ALICE, 11, "never sent before", intended=True,
                       recorded=(texts.digest("never sent before either"),)))
    await time_.run(outbox)
    assert [s.text for s in people.sent] == ["⏳ 1. setup #2 — running", "never sent before"]
    assert [(e.id, e.telegram_message_id) for e in recorded] == [(1, first), (3, people.sent[1].id)]
    assert outbox.stats["reconciled"] == 1 and outbox.stats["sent"] == 1
    await outbox.stop()
