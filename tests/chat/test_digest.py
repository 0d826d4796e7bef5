"""A notifier away longer than the notice horizon: one digest per chat, exactly once (decision 52)."""

import asyncio
import time

from valor.config import DAY

from .conftest import ALICE, GROUP, dies_before_recording, intents, notices


async def all_ended(engine, chats_born: int, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        state = await engine.projection()
        born = [p for p in state.promises.values() if p.spec.chat_id is not None]
        if len(born) >= chats_born and all(p.terminal for p in born):
            return state
        if time.monotonic() > deadline:
            raise TimeoutError([(p.id, p.state) for p in born])
        await asyncio.sleep(0.1)


def two_days_later():
    return time.time() + 2 * DAY


async def test_a_notifier_back_after_two_days_sends_one_digest_per_chat_once_even_if_killed_while_sending(
        js, engine, world, services):
    world.user(ALICE, "alice", "Alice")
    world.group(-GROUP)
    start_ingest, start_notifier = services
    await start_ingest()
    asked = [await world.says(ALICE, ALICE, "/do a"), await world.says(ALICE, ALICE, "/chain")]
    await world.says(GROUP, ALICE, "@valor hi", mentioned=True)
    state = await all_ended(engine, chats_born=2 + 1 + 3 + 1)  # /do: respond + job; /chain: respond + 3 steps
    chain = next(p for p in state.promises.values() if p.spec.message_id == asked[1].id and p.spec.task == "respond")
    steps = set(chain.children.values())

    # Sent, never recorded: the notifier "dies" there.
    killed, die_before_recording = dies_before_recording("digest", ALICE)
    first = await start_notifier(clock=two_days_later, record_hook=die_before_recording)
    await asyncio.wait_for(killed.wait(), 20)
    await first.stop()
    second = await start_notifier(clock=two_days_later)
    await second.run_until_idle()

    events = [e for _, e in await engine.events()]
    digests = notices(events, "digest")
    assert sorted(e.chat_id for e in digests) == sorted([ALICE, GROUP])
    alice_ids = {p.id for p in state.promises.values() if p.spec.chat_id == ALICE} - steps
    assert {tuple(sorted(e.covers)) for e in digests if e.chat_id == ALICE} == {tuple(sorted(alice_ids))}
    assert not notices(events, "terminal") and not notices(events, "final")  # nothing one by one past the horizon
    assert len([e for e in intents(events) if e.kind == "digest"]) == 2
    [alice_text] = [s.text for s in world.messages_to(ALICE)]  # found after the kill, not sent again
    [group_text] = [s.text for s in world.messages_to(GROUP)]
    assert alice_text.startswith("While I was away, these ended:") and group_text.startswith("While I was away")
    assert f"❌ #{chain.id}" in alice_text and "1 succeeded, 1 failed, 1 cancelled" in alice_text
    assert all(f"#{i} " not in alice_text for i in steps)  # a plan is one line, its tally
    assert second.outbox.stats["reconciled"] == 1  # Alice's digest found in the chat, not sent again

    await second.stop()  # a third start has nothing left to say
    third = await start_notifier(clock=two_days_later)
    await third.run_until_idle()
    assert len(world.sent) == 2 and third.outbox.stats["sent"] == 0
