"""Schedules from a chat against the real scheduler and executor: ``/every`` creates one, its runs answer
the message that asked, ``/schedules`` tells them, and ``/pause``, ``/resume``, ``/unschedule`` change it.

The scheduler's clock is the real one plus an offset the test moves on: an hourly schedule ticks when the
test says, and a promise submitted after the move finishing is the sign that the scheduler decided at the
new time (the decision that dispatches it is the one that fires due ticks).
"""

import time

import pytest

from schemas.commands import NewPromise
from schemas.events import Created
from services.executor.respond import respond_handler
from services.executor.worker import Executor
from services.scheduler.service import Scheduler
from valor.client import ValorClient
from valor.config import parse

from .test_end_to_end import Chat

# Attempts are timed from their ``started``, on the executor's real clock: a respond attempt must not look
# hours old to a scheduler whose clock the test moved on.
CONFIG = parse("[types.respond]\ntimeout = 864000\n")


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
async def valor(nc):
    clock = Clock()
    # The executor's heartbeats carry the real time: heard from, however far the scheduler's clock moved on.
    scheduler = Scheduler(nc, config=CONFIG, clock=clock, heartbeat_ttl=86400.0)
    executor = Executor(nc, ["default", "respond"], slots=4, executor_id="schedules-e2e", ack_wait=5,
                        handlers={"respond": respond_handler(CONFIG, nc, env={})})
    await executor.start()
    await scheduler.start()
    yield ValorClient(nc), scheduler, clock
    await scheduler.stop()
    await executor.stop(grace=1)


async def later(valor, hours: float) -> None:
    """Move the scheduler's clock on and wait until it decided at the new time."""
    client, scheduler, clock = valor
    clock.offset += hours * 3600
    scheduler._wake.set()
    [marker] = (await client.submit(NewPromise(type="noop"))).values()
    assert await client.wait([marker], timeout=15) == {marker: "succeeded"}


def runs(state, sid: int) -> list:
    return sorted((p for p in state.promises.values() if p.spec.schedule_id == sid), key=lambda p: p.id)


async def test_every_from_a_chat_runs_replying_to_its_message_and_is_paused_resumed_and_deleted_from_the_chat(
        js, valor):
    client = valor[0]
    chat, other = Chat(js, client), Chat(js, client, chat_id=43)
    mid = await chat.send("/every 1h echo check the deploy")
    asked = await chat.answer(mid)
    assert asked.result["reply"].startswith("Scheduled an echo task, every 1h: check the deploy. First run ")
    sid = await chat.until(lambda s: next((i for i, x in s.schedules.items()
                                           if x.spec.request_id == f"spawn:{asked.id}:schedule:0"), None))
    spec = (await client.projection()).schedules[sid].spec
    assert (spec.chat_id, spec.message_id, spec.every, spec.task, spec.input) == (
        chat.chat_id, mid, 3600.0, "echo", "check the deploy")

    await later(valor, 1)
    [first] = await chat.until(lambda s: runs(s, sid) if all(p.terminal for p in runs(s, sid)) else None)
    assert (first.state, first.spec.chat_id, first.spec.message_id) == ("succeeded", chat.chat_id, mid)
    assert first.spec.title == f"check the deploy (schedule #{sid})"
    listed = (await chat.say("/schedules")).result["reply"]
    assert listed.startswith(f"⏰ #{sid} every 1h: check the deploy [echo] — active, 1 run, "
                             f"last run #{first.id} succeeded, next ")

    # Another chat can neither see nor touch it.
    assert (await other.say(f"/pause {sid}")).result["reply"] == (
        f"There is no schedule #{sid} in this chat; /schedules lists them.")
    assert (await other.say("/schedules")).result["reply"].startswith("This chat has no schedules.")

    assert (await chat.say(f"/pause {sid}")).result["reply"].startswith(f"Pausing schedule #{sid} ")
    await chat.until(lambda s: s.schedules[sid].paused or None)
    await later(valor, 2)
    state = await client.projection()
    assert len(runs(state, sid)) == 1 and state.schedules[sid].skipped == 0  # paused: nothing owed, nothing told
    assert "— paused, 1 run" in (await chat.say("/schedules")).result["reply"]

    assert (await chat.say(f"/resume {sid}")).result["reply"].startswith(f"Resuming schedule #{sid} ")
    await chat.until(lambda s: not s.schedules[sid].paused or None)
    await later(valor, 1)
    second = (await chat.until(lambda s: r if len(r := runs(s, sid)) == 2 else None))[1]
    assert await client.wait([second.id], timeout=15) == {second.id: "succeeded"}
    # The ticks passed while paused (hours 2 and 3) were not made up: the next run is hour 4's.
    assert (first.spec.tick - spec.anchor, second.spec.tick - spec.anchor) == (3600.0, 4 * 3600.0)

    assert (await chat.say(f"/unschedule #{sid}")).result["reply"].startswith(f"Deleting schedule #{sid} ")
    await chat.until(lambda s: s.schedules[sid].deleted or None)
    await later(valor, 2)
    assert len(runs(await client.projection(), sid)) == 2
    assert (await chat.say("/schedules")).result["reply"].startswith("This chat has no schedules.")
    created = [e for _, e in await client.events() if isinstance(e, Created) and e.schedule_id == sid]
    assert len({e.tick for e in created}) == len(created) == 2
