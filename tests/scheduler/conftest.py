"""Schedulers started as separate processes would be: each on its own connection."""

import pytest

from services.scheduler.service import Scheduler
from valor import bus


@pytest.fixture
async def started(nc, nats_server):
    """Start schedulers, each on its own connection like a process; all stop at the end, also on failure."""
    running: list[Scheduler] = []

    async def start(**kw) -> Scheduler:
        s = Scheduler(await bus.connect(nats_server.url, name="scheduler"), lease_ttl=1.0, **kw)
        running.append(s)
        await s.start()
        return s

    yield start
    for s in running:
        await gone(s)


async def gone(s: Scheduler) -> None:
    """Stopped and disconnected, as when its process exits: no pull request of its own outlives it."""
    if not s._stopping:
        await s.stop()
    if not s.nc.is_closed:
        await s.nc.close()
