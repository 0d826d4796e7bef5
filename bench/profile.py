"""``make profile``: where a promise's CPU goes inside the services, from py-spy samples.

    python -m bench.profile [--promises N] [--executors N]

Runs ``make bench``'s end-to-end no-op load (3-node R3 cluster, dispatch ahead)
with py-spy sampling the scheduler and one executor, then sorts each process's
samples by where the sampled frame's code lives: nats-py (the client's
per-message work), the event loop, metrics, Valor's own code (msgspec, in C,
counts where it is called from).  Idle
samples (waiting in the loop's poll) are left out of the shares.  The raw
samples stay in ``bench/results/`` for flame graphs.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from valor import eventloop
from valor.natsserver import NatsCluster

from . import measures
from .run import RESULTS

WATCHED = ("scheduler-1", "executor-1")
# By the start of the sampled frame's file path (py-spy prints them relative to sys.path).
AREAS = (("nats-py", "nats/"), ("json (nats-py's JetStream acks)", "json/"), ("metrics", "prometheus_client/"),
         ("event loop", "asyncio/"), ("event loop", "uvloop/"), ("Valor", "services/"),
         ("Valor", "valor/"), ("Valor", "schemas/"))
IDLE = ("select (selectors.py", "Runner.run (asyncio/runners.py", "run_forever")


def area(frame: str) -> str:
    path = frame.rpartition(" (")[2]
    return next((name for name, prefix in AREAS if path.startswith(prefix)), "other")


def shares(raw: Path) -> dict[str, float]:
    """Each area's share of the busy samples, by the frame the sample was taken in."""
    busy: Counter[str] = Counter()
    idle = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        leaf = stack.rsplit(";", 1)[-1]
        if any(marker in leaf for marker in IDLE):
            idle += int(count)
        else:
            busy[area(leaf)] += int(count)
    total = sum(busy.values()) or 1
    out = {name: 100 * n / total for name, n in busy.most_common()}
    out["idle_of_all_samples"] = 100 * idle / (total + idle)
    return out


async def main(promises: int, executors: int) -> dict:
    beside = Path(sys.executable).parent / "py-spy"  # the venv's, when its bin is not on PATH
    spy = str(beside) if beside.exists() else shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy is not installed: pip install -e '.[dev]'")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    raws = {name: RESULTS / f"profile-{stamp}-{name}.txt" for name in WATCHED}
    RESULTS.mkdir(exist_ok=True)

    def watch(stack):
        spies = [subprocess.Popen([spy, "record", "--format", "raw", "--rate", "200", "--nonblocking",
                                   "-o", str(raws[name]), "-p", str(stack.services[name].proc.pid)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for name in WATCHED]
        time.sleep(0.5)  # attached before the load starts

        def unwatch():
            for p in spies:
                p.send_signal(2)  # py-spy writes its samples on SIGINT
            for p in spies:
                p.wait(30)
        return unwatch

    cluster = NatsCluster(size=3).start()
    try:
        await asyncio.sleep(1.0)
        figures = await measures.throughput(cluster, executors, measures.noop_plans(promises), watch=watch)
    finally:
        cluster.cleanup()
    return {"throughput": figures, **{name: shares(raw) for name, raw in raws.items() if raw.exists()}}


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--promises", type=int, default=6000)
    parser.add_argument("--executors", type=int, default=4)
    args = parser.parse_args()
    result = eventloop.run(main(args.promises, args.executors))
    for name, figures in result.items():
        print(name)
        for key, value in figures.items():
            unit = "" if name == "throughput" else " %"
            print(f"  {key:40s} {value:10,.1f}{unit}")


if __name__ == "__main__":
    cli()
