"""Clock jumps on the scheduler's host: timers never early, never twice; the lease holds (decision 68).

The scheduler reads wall time and monotonic time only through its injected clocks, so
these tests jump and skew them as an NTP step or an operator would.
"""

import asyncio
import time

from schemas.commands import NewPromise as T
from schemas.events import AttemptFailed, Created, Dispatched, RetryScheduled, Started
from services.scheduler.service import Scheduler
from tests.schedules.test_ticks import add, ticks
from valor.client import ValorClient

from .sim import Sim
from .test_lease import fresh_lease_bucket, leading, standing_by, until

# The wall clock, step by step: on, back an hour, on, forward past everything, back again.
WALK = [1000.0, 1005.0, -2600.0, -2590.0, 1012.0, 1029.9, 1030.0, 1031.0, 1095.0, 500.0, 1100.0, 1200.0]


def test_timers_fire_once_and_never_before_their_time_as_the_wall_clock_jumps_both_ways():
    sim = Sim()
    ids = sim.submit(T(name="later", delay=30), T(name="flaky", retries=2, backoff=20),
                     T(name="slow", timeout=60, retries=0))
    sid = add(sim, every=25.0)
    due: dict[tuple[int, int], float] = {(ids["later"], 1): 1030.0}
    seen_dispatch: list[tuple[int, int]] = []
    for now in WALK:
        sim.now = now
        for _ in range(5):  # deciding again at the same moment finds nothing more
            sim.step()
        for item in sim.take():
            key = (item.id, item.attempt)
            assert key not in seen_dispatch, f"{key} dispatched twice"
            assert now >= due.get(key, 0.0), f"{key} dispatched at {now}, due at {due[key]}"
            seen_dispatch.append(key)
            if item.id == ids["flaky"] and item.attempt == 1:
                sim.record(Started(at=now, id=item.id, attempt=1),
                           AttemptFailed(at=now, id=item.id, attempt=1, error="boom"))
            elif item.id == ids["slow"]:
                sim.record(Started(at=now, id=item.id, attempt=item.attempt))
            else:
                sim.run(item, "ok")
        for e in sim.log:
            if isinstance(e, RetryScheduled):
                due[(e.id, e.next_attempt)] = e.not_before
    log = sim.log
    assert {(e.id, e.attempt) for e in log if isinstance(e, Dispatched)} == set(seen_dispatch)
    # the delayed promise ran once, at 1030 (not at the jump back, nor twice after the one forward)
    assert seen_dispatch.count((ids["later"], 1)) == 1
    # the retry came once, after its backoff as the clock in force told it
    assert seen_dispatch.count((ids["flaky"], 2)) == 1
    # the timeout fired once, only when 60 s had passed since the start by that clock
    [timed_out] = [e for e in log if isinstance(e, AttemptFailed) and e.id == ids["slow"]]
    [started] = [e for e in log if isinstance(e, Started) and e.id == ids["slow"]]
    assert timed_out.at >= started.at + 60
    # each schedule tick once, none repeated by the clock going back over them
    got = [t.tick for t in ticks(sim)]
    assert len(got) == len(set(got)) and all(t.schedule_id == sid for t in ticks(sim))


class Jumpy:
    """A clock that reads the real one plus an offset a test moves."""

    def __init__(self, read) -> None:
        self.read, self.offset = read, 0.0

    def __call__(self) -> float:
        return self.read() + self.offset


async def test_the_lease_holds_through_wall_clock_jumps_and_promises_are_still_created(nc, js):
    await fresh_lease_bucket(js, 2.0)
    wall = Jumpy(time.time)
    s = await leading(Scheduler(nc, name="jumpy", clock=wall))
    revision = s.lease.revision
    for jump in (3600.0, -7200.0, 86_400.0):
        wall.offset += jump
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.6:  # several renewals (every 0.2 s) under the jumped clock
            assert s.leader and s._leader_tasks, f"stepped down after a wall clock jump of {jump:+g} s"
            await asyncio.sleep(0.02)
    assert s.lease.revision > revision  # renewed all along, never lost
    ids = await ValorClient(nc).submit(T(title="after the jumps"))
    created = [e for _, e in await ValorClient(nc).events() if isinstance(e, Created)]
    assert [e.id for e in created] == [ids["0"]]
    await s.stop()


async def test_a_skewed_monotonic_clock_makes_the_holder_step_down_safely_and_a_leader_returns(nc, js):
    await fresh_lease_bucket(js, 2.0)
    mono = Jumpy(time.monotonic)
    first = await leading(Scheduler(nc, name="skewed", monotonic=mono))
    second = await standing_by(Scheduler(nc, name="steady"), first)
    both = []

    async def watch():
        while True:
            both.append(first.leader and second.leader)
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    for skew in (+30.0, -60.0):  # forward: its share of the TTL looks spent; backward: unknown, so spent
        mono.offset += skew
        assert not first.leader  # at once, before its renewing task even looked
        took = await until(lambda: (first.leader or second.leader) and (first._leader_tasks or second._leader_tasks))
        assert first.leader or second.leader
        assert took < 2.0, took  # given back by compare-and-set, not waited out
    watcher.cancel()
    assert not any(both), "two leaders at once"
    ids = await ValorClient(nc).submit(T(title="after the skews"))
    assert ids["0"] == 1
    await first.stop()
    await second.stop()
