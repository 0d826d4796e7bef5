"""A 1-second schedule against real schedulers with an injected clock, restarted and failed over:
exactly one promise per tick, and every tick that did not run was skipped on the record and told."""

import asyncio
import time

import pytest

from schemas import subjects
from schemas.commands import NewPromise
from schemas.events import Created, TicksSkipped
from schemas.streams import bucket_configs
from valor.client import ValorClient

from ..scheduler.conftest import gone

pytestmark = pytest.mark.timeout(120)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def until(condition, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def crash(s) -> None:
    """The leader vanishes without giving its lease back: a standby must wait the lease out."""
    for task in s._tasks + s._leader_tasks:
        task.cancel()
    await s._step_down()
    s.lease.revision = None
    s._stopping = True
    await s.nc.close()


def expand(skip: TicksSkipped) -> list[float]:
    return [skip.first + k for k in range(skip.count)]


async def ticks_over_restarts_and_failovers(nc, js, started, rounds: int):
    await js.delete_key_value(subjects.LEASE_BUCKET)
    [lease] = [c for c in bucket_configs(lease_ttl=1.0) if c.bucket == subjects.LEASE_BUCKET]
    await js.create_key_value(lease)
    clock = Clock(10_000.25)
    leader = await started(clock=clock, name="s0")
    standby = await started(clock=clock, name="s1")
    await until(lambda: leader.leader, what="a leader")
    # Nobody runs the ticks (no executor): "run" so each tick is a promise even while the last one is open.
    sid = await ValorClient(nc).schedule(NewPromise(type="echo", input="tick"), every=1.0, overlap="run",
                                         chat_id=5, message_id=50)
    await until(lambda: sid in leader.state.schedules, what="the schedule folded")
    n = 0
    for i in range(rounds):
        if i % 10 == 4:  # restarted: stop cleanly (the key is deleted), start again; either may take over
            await gone(leader)
            restarted = await started(clock=clock, name=f"r{i}")
            await until(lambda r=restarted, s=standby: r.leader or s.leader, what="a leader after the restart")
            leader, standby = (restarted, standby) if restarted.leader else (standby, restarted)
        elif i % 10 == 9:  # failed over, the clock running on meanwhile: ticks are missed
            await crash(leader)
            clock.now += 3
            await until(lambda s=standby: s.leader, what="the standby taking over")
            leader, standby = standby, await started(clock=clock, name=f"f{i}")
        else:
            clock.now += 1
        n = int(clock.now) - 10_000
        leader._wake.set()
        await until(lambda s=leader, n=n: s.leader and s.state.schedules[sid].settled >= 10_000 + n,
                    what=f"tick {n} settled")
    created = [e for _, e in await ValorClient(nc).events() if isinstance(e, Created) and e.schedule_id == sid]
    skipped = [e for _, e in await ValorClient(nc).events() if isinstance(e, TicksSkipped) and e.id == sid]
    return n, created, skipped


async def test_a_one_second_schedule_fires_each_tick_once_across_restarts_and_failovers(nc, js, started):
    n, created, skipped = await ticks_over_restarts_and_failovers(nc, js, started, rounds=30)
    runs = [c.tick for c in created]
    assert len(runs) == len(set(runs)), "a tick ran twice"
    assert len({c.id for c in created}) == len(created)
    gaps = [t for s in skipped for t in expand(s)]
    assert sorted(runs + gaps) == [10_000.0 + k for k in range(1, n + 1)], "a tick neither ran nor was skipped"
    assert skipped and all(s.reason == "missed" for s in skipped)
    # Each skip was told once, by the run right after it.
    assert sum(c.skipped for c in created) == len(gaps)
    assert {(c.chat_id, c.message_id) for c in created} == {(5, 50)}
