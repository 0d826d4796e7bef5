"""Instructions reach an attempt: from its work item, heard since, read from the log, or live while it runs."""

from __future__ import annotations

import asyncio
import time

from schemas import subjects
from schemas.commands import WorkItem
from schemas.events import InstructionsAdded, InstructionsDelivered
from services.executor.cancellations import CLOCK_MARGIN
from services.executor.instructions import Heard, Instructions
from valor import bus

from .helpers import last, put_work, story


def added(pid: int, text: str, n: int, at: float = 0.0) -> InstructionsAdded:
    return InstructionsAdded(id=pid, text=text, request_id=f"respond:{n}:0", at=at or float(n))


def test_instructions_count_once_and_those_known_at_the_start_are_in_recorded_order():
    instructions = Instructions([added(1, "b", 2)])
    instructions.add([added(1, "a", 1), added(1, "b", 2)])
    assert instructions.texts == ["a", "b"]


async def test_instructions_arriving_after_the_start_come_out_of_next_in_order():
    instructions = Instructions([added(1, "a", 1)])
    instructions.start()
    instructions.add([added(1, "b", 2), added(1, "a", 1), added(1, "c", 3)])
    assert instructions.texts == ["a"]
    assert [(await instructions.next()).text for _ in range(2)] == ["b", "c"]


def test_heard_instructions_are_kept_per_promise_and_bounded(monkeypatch):
    monkeypatch.setattr("services.executor.instructions.REMEMBERED", 2)
    heard = Heard(listening_since=100.0)
    for pid, n in ((1, 1), (2, 2), (1, 3), (1, 3), (3, 4)):
        heard.heard(added(pid, f"t{n}", n))
    assert heard.of(2) == []  # the least recently heard promise went first
    assert [i.text for i in heard.of(1)] == ["t1", "t3"] and [i.text for i in heard.of(3)] == ["t4"]
    assert heard.cover(100.0 + CLOCK_MARGIN) and not heard.cover(100.0)


async def record(js, instruction: InstructionsAdded) -> None:
    """Store ``instructions_added`` as the scheduler does."""
    await bus.publish_event(js, instruction, subjects.msg_id_for_event(instruction.id, "instructions_added",
                                                                         instruction.request_id))


def steered(seen: dict):
    """A handler that keeps what it knew at the start and, when asked to, takes one instruction while it runs."""
    async def handler(ctx):
        seen[ctx.id] = {"before": ctx.instructions.texts}
        if ctx.input == "listen":
            instruction = await ctx.instructions.next()
            await ctx.instructions.delivered(instruction)
            seen[ctx.id]["live"] = instruction.text
        return {"ok": True}
    return handler


async def waiting(seen: dict, pid: int):
    """The handler of ``pid`` has started (and waits for instructions), or None."""
    return seen.get(pid)


async def until(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while (value := await check()) is None:
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.05)
    return value


async def test_an_attempt_starts_with_its_item_s_instructions_and_those_heard_since(js, executor):
    seen: dict = {}
    ex = await executor(handlers={"steered": steered(seen)})
    ex.heard.listening_since -= CLOCK_MARGIN + 1  # listening for a while: what it heard is all there is
    await record(js, added(1, "heard after dispatch", 2, at=time.time()))
    await put_work(js, WorkItem(id=1, attempt=1, task="steered", instructions=[added(1, "in the item", 1)]))
    await until(lambda: last(js, 1, "succeeded"))
    assert seen[1]["before"] == ["in the item", "heard after dispatch"]


async def test_an_attempt_that_may_have_missed_some_reads_them_from_the_log(js, executor):
    seen: dict = {}
    await record(js, added(2, "recorded before this executor listened", 5, at=time.time()))
    ex = await executor(handlers={"steered": steered(seen)})
    ex.heard.listening_since = time.time() + 60  # work queued around its start: what it heard may not be all
    await put_work(js, WorkItem(id=2, attempt=1, task="steered"))
    await until(lambda: last(js, 2, "succeeded"))
    assert seen[2]["before"] == ["recorded before this executor listened"]


async def test_a_running_attempt_hears_instructions_and_records_their_delivery(js, executor):
    seen: dict = {}
    await executor(handlers={"steered": steered(seen)})
    await put_work(js, WorkItem(id=3, attempt=1, task="steered", input="listen"))
    await until(lambda: last(js, 3, "started"))
    await until(lambda: waiting(seen, 3))
    await record(js, added(3, "check the logs too", 7, at=time.time()))
    await until(lambda: last(js, 3, "succeeded"))
    assert seen[3] == {"before": [], "live": "check the logs too"}
    delivered = [e for e in await story(js, 3) if isinstance(e, InstructionsDelivered)]
    assert [(e.attempt, e.request_id) for e in delivered] == [(1, "respond:7:0")]
