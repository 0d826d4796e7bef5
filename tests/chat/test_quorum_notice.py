"""Two of three nodes gone: a chat whose message cannot be stored is told once, and the message is
stored once when a node returns (decision 77)."""

from __future__ import annotations

import asyncio
import io
import json
import time

import pytest

from schemas import subjects
from services.ingest import outage
from services.ingest.console import ConsoleIngest
from services.ingest.outage import Outage, check_due, checked, refused, stored
from services.ingest.service import Ingest
from valor import bus, console
from valor.console import Screen, send_line
from valor.natsserver import NatsCluster

from .conftest import ALICE, CAROL, CONFIG, STRANGER, stored_messages
from .fake_telegram import FakeTelegram

NO_QUORUM = outage.notice(1, 3)

# One ingest's life through two outages: (what happened, its values, the notice due).
STORY = [
    ("checked", (0.0, (1, 3)), None),
    ("refused", (ALICE, 10), NO_QUORUM),  # the first refused store of the chat: told, in reply to it
    ("refused", (ALICE, 10), None),  # its retries
    ("refused", (ALICE, 11), None),  # another message, same outage
    ("refused", (CAROL, 20), NO_QUORUM),  # another chat is told too, once
    ("stored", (ALICE,), None),  # a node returned: ALICE's messages are stored
    ("refused", (CAROL, 20), None),  # CAROL's retry meets an election: no answer cached, nothing said
    ("checked", (5.0, None), None),
    ("refused", (CAROL, 21), None),  # refused for another reason than the quorum: waited out without a word
    ("checked", (9.0, (1, 3)), None),  # lost again
    ("refused", (ALICE, 12), NO_QUORUM),  # a new outage for ALICE: told again
    ("refused", (CAROL, 22), None),  # CAROL has had no store accepted since she was told
    ("stored", (CAROL,), None),
    ("stored", (ALICE,), None),
    ("checked", (12.0, (0, 3)), None),
    ("refused", (ALICE, 10), None),  # a copy of a message already replied to (history and live): never twice
    ("refused", (CAROL, 23), outage.notice(0, 3)),
    ("refused", (ALICE, 13), outage.notice(0, 3)),
]


def test_a_chat_is_told_once_per_outage_from_its_first_refused_store_until_one_is_accepted():
    state = Outage()
    for step, args, due in STORY:
        said = None
        if step == "checked":
            state = checked(state, *args)
        elif step == "stored":
            state = stored(state, *args)
        else:
            state, said = refused(state, *args)
        assert said == due, (step, args)


@pytest.mark.parametrize("checked_at, now, due", [
    (None, 0.0, True),  # never asked
    (10.0, 10.0, False),
    (10.0, 10.0 + outage.QUORUM_CHECK_EVERY - 0.01, False),  # every held message's retry reuses the answer
    (10.0, 10.0 + outage.QUORUM_CHECK_EVERY, True),
    (10.0, 9.0, True),  # the clock went back: the answer's age is unknown
])
def test_the_cluster_is_asked_at_most_every_few_seconds(checked_at, now, due):
    assert check_due(Outage(checked_at=checked_at), now) is due


def test_an_accepted_store_forgets_the_last_answer_and_the_notice_names_the_nodes():
    state = stored(checked(Outage(), 1.0, (1, 3)), ALICE)
    assert (state.nodes, check_due(state, 1.5)) == (None, True)
    assert "the cluster has no quorum (1 of 3 nodes)" in NO_QUORUM and "as soon as a node returns" in NO_QUORUM


def test_only_the_last_messages_replied_to_are_remembered():
    state = checked(Outage(), 0.0, (1, 3))
    for message_id in range(outage.TOLD_ABOUT + 5):
        state, said = refused(state, ALICE, message_id)
        assert said == NO_QUORUM
        state = checked(stored(state, ALICE), 0.0, (1, 3))
    assert len(state.told_about) == outage.TOLD_ABOUT


async def test_the_console_shows_a_held_line_once_and_waits_for_its_id_or_for_ingest_going_quiet(nc):
    async def held_twice_then_stored(msg) -> None:
        for answer in ({"held": "the cluster has no quorum: 1 of 3 nodes"},) * 2 + ({"id": 7},):
            await nc.publish(msg.reply, json.dumps(answer).encode())

    out = io.StringIO()
    sub = await nc.subscribe("console.5.in", cb=held_twice_then_stored)
    assert await console.stored(nc, "console.5.in", b"{}", Screen(out), timeout=5, held_silence=5) == {"id": 7}
    assert out.getvalue().splitlines() == [
        "(held, not stored yet: the cluster has no quorum: 1 of 3 nodes; still trying)"]
    await sub.unsubscribe()

    async def held_then_gone(msg) -> None:
        await nc.publish(msg.reply, json.dumps({"held": "the cluster has no quorum: 1 of 3 nodes"}).encode())

    out = io.StringIO()
    sub = await nc.subscribe("console.6.in", cb=held_then_gone)
    assert await console.stored(nc, "console.6.in", b"{}", Screen(out), timeout=5, held_silence=0.3) is None
    assert out.getvalue().splitlines()[-1] == "(ingest stopped answering while it held this line; see `valor status`)"
    await sub.unsubscribe()
    Screen(out).show({"op": "notice", "reply_to": 4, "text": NO_QUORUM})
    assert out.getvalue().splitlines()[-1] == f"valor ↩ #4: {NO_QUORUM}"


# --- a real three-node cluster losing two nodes ---------------------------------------------------


async def retry_soon(delay: float) -> None:
    """Ingest's retries, at most half a second apart: the store after a node returns, without its 5 s backoff."""
    await asyncio.sleep(min(delay, 0.5))


async def read_until(read, seen, expected, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (got := seen(await bus.patiently("CHAT", read))) != expected:
        assert time.monotonic() < deadline, got
        await asyncio.sleep(0.1)


def meta_leader(cluster: NatsCluster):
    """The node that last said it leads JetStream's metadata (a fresh cluster's, stable by now)."""
    for node in cluster.nodes:
        said = [line for line in node.log.read_text().splitlines() if "metadata leader" in line]
        if said and "Self is new" in said[-1]:
            return node
    return None


async def until(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.timeout(120)
async def test_two_nodes_gone_a_chat_is_told_once_and_its_messages_are_stored_once_when_a_node_returns():
    cluster = NatsCluster(size=3).start()
    world = FakeTelegram()
    world.user(ALICE, "alice", "Alice")
    world.user(STRANGER, "mallory", "Mallory")
    tasks: list[asyncio.Task] = []
    try:
        setup = await bus.connect(cluster.url, name="setup")
        await bus.ensure_streams(setup.jetstream(), 3)
        chat_leader = (await setup.jetstream().stream_info(subjects.CHAT)).cluster.leader
        await setup.close()
        # The survivor leads neither JetStream's metadata nor CHAT: a leader left alone goes on as one
        # until it sees its quorum gone (~15 s; a store waits out its 5 s timeout), a follower refuses
        # at once. Either is an outage; this one is quick to test.
        survivor = next(n for n in cluster.nodes if n is not meta_leader(cluster) and n.name != chat_leader)
        gone = [n for n in cluster.nodes if n is not survivor]
        nc = await bus.connect(",".join(n.url for n in [survivor, *gone]), name="ingest", dont_randomize=True)
        ingest = Ingest(nc, world.inbound(), CONFIG, sleep=retry_soon)
        await ingest.start(reconcile_forever=False)
        console_ingest = ConsoleIngest(nc, Ingest(nc, None, CONFIG, sleep=retry_soon))
        await console_ingest.start()
        user = await bus.connect(survivor.url, name="console")  # the console: core NATS, on the surviving node
        screen_out = io.StringIO()
        screen = Screen(screen_out)

        async def show(msg) -> None:
            screen.show(json.loads(msg.data))

        await user.subscribe("console.5.out", cb=show)
        await user.flush()
        for node in gone:
            node.kill()

        line = asyncio.create_task(send_line(user, 5, "console line", screen))
        first = world.say(ALICE, ALICE, "are you there?")
        tasks += [line, asyncio.create_task(world.deliver(first[1]))]
        await until(lambda: world.messages_to(ALICE), "the notice")
        [notice] = world.messages_to(ALICE)
        assert (notice.text, notice.reply_to) == (NO_QUORUM, first[0].id)
        second = world.say(ALICE, ALICE, "hello?")
        tasks.append(asyncio.create_task(world.deliver(second[1])))
        # Held: both refused with no quorum, the decision about the second taken.
        await until(lambda: {(ALICE, first[0].id), (ALICE, second[0].id)} <= ingest.held, "both held")
        assert len(world.messages_to(ALICE)) == 1  # the second message of the outage: no word
        await asyncio.wait_for(world.says(STRANGER, STRANGER, "let me in"), 5)  # not accepted: not held
        assert world.messages_to(STRANGER) == [] and all(chat != STRANGER for chat, _ in ingest.held)

        await until(lambda: "held, not stored yet: the cluster has no quorum: 1 of 3 nodes" in screen_out.getvalue(),
                    "the console's line held")
        # In reply to the line; or to nothing yet, when the read its id continues from was refused too.
        await until(lambda: f"valor ↩ #1: {NO_QUORUM}" in screen_out.getvalue()
                    or f"valor: {NO_QUORUM}" in screen_out.getvalue(), "the console told")

        gone[0].start()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
        # Each once (a second copy would never leave the list); read again while the just-recovered
        # stream still fails a read (stored_messages skips what it could not read).
        js = nc.jetstream()
        await read_until(lambda: stored_messages(js, ALICE), lambda ms: [m.message_id for m in ms],
                         [first[0].id, second[0].id])
        await read_until(lambda: stored_messages(js, 5), lambda ms: [m.text for m in ms], ["console line"])
        assert ingest.held == set()
        assert screen_out.getvalue().splitlines()[-1] == "you [#1]: console line"
        assert screen_out.getvalue().count(NO_QUORUM) == 1 and len(world.messages_to(ALICE)) == 1
        await console_ingest.stop()
        await ingest.stop()
        await user.close()
        await nc.close()
    finally:
        for task in tasks:
            task.cancel()
        cluster.cleanup()
