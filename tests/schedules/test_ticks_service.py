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


async def ticks_over_restarts_and_failovers(nc, js, started, rounds: int, restart_every: int = 10,
                                            fail_every: int = 10):
    """``rounds`` rounds of a 1-second schedule: the clock moves a second, or the leader is
    restarted (every ``restart_every``-th round) or crashed, the clock running on 3 s
    meanwhile (every ``fail_every``-th); each round waits for its ticks to be settled."""
    await js.delete_key_value(subjects.LEASE_BUCKET)
    [lease] = [c for c in bucket_configs(lease_ttl=1.0) if c.bucket == subjects.LEASE_BUCKET]
    await js.create_key_value(lease)
    clock = Clock(10_000.25)
    pair = [await started(clock=clock, name="s0"), await started(clock=clock, name="s1")]
    await until(lambda: any(s.leader for s in pair), what="a leader")
    # Nobody runs the ticks (no executor): "run" so each tick is a promise even while the last one is open.
    sid = await ValorClient(nc).schedule(NewPromise(type="echo", input="tick"), every=1.0, overlap="run",
                                         chat_id=5, message_id=50)
    await until(lambda: all(sid in s.state.schedules for s in pair), what="the schedule folded")
    n = 0
    for i in range(rounds):
        # Whichever holds the lease leads: a restarted leader's standby often takes it over
        # before the new process asks for it, and then keeps it.
        [leader] = [s for s in pair if s.leader]
        standby = pair[1 - pair.index(leader)]
        if i % restart_every == restart_every // 2:  # restarted: stop cleanly, start again
            await gone(leader)
            pair = [standby, await started(clock=clock, name=f"r{i}")]
        elif i % fail_every == fail_every - 1:  # failed over, the clock running on meanwhile: ticks are missed
            await crash(leader)
            clock.now += 3
            await until(lambda s=standby: s.leader, what="the standby taking over")
            pair = [standby, await started(clock=clock, name=f"f{i}")]
        else:
            clock.now += 1
        n = int(clock.now) - 10_000
        for s in pair:
            s._wake.set()
        await until(lambda n=n, pair=pair: any(s.leader and s.state.schedules[sid].settled >= 10_000 + n
                                               for s in pair),
                    what=f"tick {n} settled")
    events = await ValorClient(nc).events()
    created = [e for _, e in events if isinstance(e, Created) and e.schedule_id == sid]
    skipped = [e for _, e in events if isinstance(e, TicksSkipped) and e.id == sid]
    return n, created, skipped


async def test_a_one_second_schedule_fires_each_tick_once_across_restarts_and_failovers(nc, js, started):
    # 300 ticks, 12 restarts and 6 failovers (each waits out the 1 s lease); bench/ticks.py runs 1,000 rounds.
    n, created, skipped = await ticks_over_restarts_and_failovers(nc, js, started, rounds=300, restart_every=25,
                                                                  fail_every=50)
    runs = [c.tick for c in created]
    assert len(runs) == len(set(runs)), "a tick ran twice"
    assert len({c.id for c in created}) == len(created)
    gaps = [t for s in skipped for t in expand(s)]
    assert sorted(runs + gaps) == [10_000.0 + k for k in range(1, n + 1)], "a tick neither ran nor was skipped"
    assert skipped and all(s.reason == "missed" for s in skipped)
    # Each skip was told once, by the run right after it.
    assert sum(c.skipped for c in created) == len(gaps)
    assert {(c.chat_id, c.message_id) for c in created} == {(5, 50)}
