"""The 1,000-tick harness (issue 17), run by hand, not in ``make test``:

    .venv/bin/python -m bench.ticks [--rounds 1000]

A 1-second schedule on a fresh nats-server with an injected clock, its leader
restarted every tenth round and crashed (the lease waited out, the clock running
on, so ticks are missed) every tenth round after; the rounds of
``tests/schedules/test_ticks_service.py``, which ``make test`` runs 300 of with
fewer restarts and failovers.  Prints the ticks fired, skipped and reported, any
tick created twice and any tick neither run nor skipped; exits 1 when there is
one of those.  (Whichever scheduler holds the lease is the leader: after a
restart it is often the old standby, which the harness once failed to follow and
timed out waiting on the new process, not a fault of the scheduler.)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections import Counter

from valor import bus, eventloop
from valor.natsserver import NatsCluster

os.environ.setdefault("VALOR_REPLICAS", "1")

from services.scheduler.service import Scheduler  # noqa: E402
from tests.scheduler.conftest import gone  # noqa: E402
from tests.schedules.test_ticks_service import expand, ticks_over_restarts_and_failovers  # noqa: E402


async def harness(rounds: int) -> int:
    cluster = NatsCluster(size=1).start()
    running: list[Scheduler] = []

    async def started(**kw) -> Scheduler:
        s = Scheduler(await bus.connect(cluster.url, name="scheduler"), lease_ttl=1.0, **kw)
        running.append(s)
        await s.start()
        return s

    nc = await bus.connect(cluster.url, name="bench")
    try:
        await bus.ensure_streams(nc.jetstream(), 1)
        began = time.monotonic()
        n, created, skipped = await ticks_over_restarts_and_failovers(nc, nc.jetstream(), started, rounds)
        took = time.monotonic() - began
    finally:
        for s in running:
            await gone(s)
        await nc.close()
        cluster.cleanup()
    runs = Counter(c.tick for c in created)
    twice = sorted(t for t, k in runs.items() if k > 1)
    gaps = [t for s in skipped for t in expand(s)]
    unaccounted = sorted(set(10_000.0 + k for k in range(1, n + 1)) - set(runs) - set(gaps))
    reported = sum(c.skipped for c in created)
    print(f"{rounds} rounds, {n} ticks of clock in {took:.1f} s")
    print(f"fired     {len(runs)}")
    print(f"skipped   {len(gaps)} (in {len(skipped)} ticks_skipped events)")
    print(f"reported  {reported} (skips told by the next run's created)")
    print(f"twice     {len(twice)} {twice[:10]}")
    print(f"missing   {len(unaccounted)} {unaccounted[:10]}")
    return 1 if twice or unaccounted or set(runs) & set(gaps) or reported != len(gaps) else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # a crashed leader's fetch loops retry noisily; the figures matter
    sys.exit(eventloop.run(harness(args.rounds)))


if __name__ == "__main__":
    main()
