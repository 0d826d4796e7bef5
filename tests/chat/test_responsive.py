"""Replies never wait behind work: with every background slot held, /status and /cancel still act.

Real NATS, scheduler, executor (its respond queue with a slot of its own, as
``make up`` runs it), notifier and the command agent; only Telegram is the fake.
The bound is generous (a loaded machine answers in well under a second; the
figure is in ``make bench``): what it pins is that the answer does not wait
for a background slot, which these sleeps would hold for ten minutes.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from services.executor.respond import respond_handler
from services.executor.worker import Executor
from services.scheduler.service import Scheduler
from valor.client import ValorClient

from .conftest import ALICE, CONFIG

BOUND = 10.0  # seconds; the sleeps hold their slots for 600
LONG = '{"seconds": 600}'


@pytest.fixture
async def valor(nc):
    scheduler = Scheduler(nc, config=CONFIG)
    executor = Executor(nc, ["default", "respond"], "respond=1,default=2", executor_id="responsive", ack_wait=5,
                        handlers={"respond": respond_handler(CONFIG, nc, env={})})
    await executor.start()
    await scheduler.start()
    yield ValorClient(nc), executor
    await scheduler.stop()
    await executor.stop(grace=0.5)


async def until(find, what: str, timeout: float = BOUND):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := await find():
            return found
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{what} within {timeout:g}s")


async def test_status_and_cancel_are_answered_and_applied_while_every_background_slot_is_held(
        world, services, valor):
    client, executor = valor
    world.user(ALICE, "alice", "Alice")
    start_ingest, start_notifier = services
    await start_ingest()
    await start_notifier()

    def answer_to(message):
        async def find():
            return next((s for s in world.sent if s.chat_id == ALICE and s.reply_to == message.id), None)
        return find

    async def states() -> dict[str, str]:
        state = await client.projection()
        return {p.spec.name: p.state for p in state.promises.values() if p.spec.task == "sleep"}

    async def by_name() -> dict[str, int]:
        state = await client.projection()
        return {p.spec.name: p.id for p in state.promises.values() if p.spec.task == "sleep"}

    await world.says(ALICE, ALICE, "/plan\n" + "\n".join(f"s{i}: sleep: {LONG}" for i in range(4)))

    async def slots_full():
        s = await states()
        return s if sorted(s.values()) == ["queued", "queued", "running", "running"] else None

    before = await until(slots_full, "both background slots held, two promises waiting")
    assert executor.busy == 2

    status = await world.says(ALICE, ALICE, "/status")
    reply = await until(answer_to(status), "an answer to /status")
    assert reply.text.startswith("4 open:")

    running = sorted(name for name, st in before.items() if st == "running")
    ids = await by_name()
    victim = ids[running[0]]
    cancel = await world.says(ALICE, ALICE, f"/cancel {victim}")
    reply = await until(answer_to(cancel), "an answer to /cancel")
    assert reply.text.startswith(f"Cancelling #{victim}")

    async def applied():
        s = await states()
        # Cancelled, and its attempt stopped: the slot it held is running the next promise.
        return s if s[running[0]] == "cancelled" and list(s.values()).count("running") == 2 else None

    after = await until(applied, f"#{victim} cancelled and its slot running the next promise")
    assert running[1] in [n for n, st in after.items() if st == "running"]
    assert [p.busy for p in executor.pools()] == [0, 2]  # respond's slot is free again, default's both held

    # `valor cancel` takes no slot at all: the scheduler stores the cancel, the executor stops the attempt,
    # and the last waiting promise gets its slot (two slots: it could not start while the attempt ran).
    victim = ids[running[1]]
    await client.cancel(victim, "from the CLI")

    async def stopped():
        s = await states()
        return s[running[1]] == "cancelled" and sorted(s.values()).count("running") == 2

    await until(stopped, f"#{victim} cancelled from the CLI and its slot running the last promise")
