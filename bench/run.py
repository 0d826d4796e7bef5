"""``make bench``: measure Valor beside the client's own ceiling; print a table, write JSON.

    python -m bench.run [--quick] [--only NAME ...]

The headline (``shipped``, bench/shipped.py) is the ``make up`` stack as shipped,
driven through ``valor plan``/``valor wait`` and the client API; ``reads``
(bench/reads.py) times the reads on it at 1,000,000 events beside a small log.  The rest is the
engine floor: fresh nats-server processes with the shipped durability (file
storage, ``sync_interval: always``) under a stripped set of services.  Ratios divide an engine figure by
the ceiling measured in the same run (pipelined publish+ack on the same
cluster size), so results read the same on a noisy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from pathlib import Path

from valor import eventloop
from valor.natsserver import NatsCluster

from . import chat, measures, reads, shipped

RESULTS = Path(__file__).resolve().parent / "results"

TARGETS = {
    "e2e_noop_r3_4exec": (">=", 2000, "promises/s"),
    "dag_chain3_r3": (">=", 1500, "promises/s"),
    "dag_fanout10_r3": (">=", 1500, "promises/s"),
    "submit_to_start_p99_ms": ("<=", 25, "ms"),
    "rebuild_events_per_s": (">=", 40000, "events/s"),
    "restart_to_serving_s": ("<=", 2, "s"),
    "scheduler_rss_mb": ("<=", 300, "MB"),
    "catchup_s": ("<=", 5, "s"),
    "chat_under_load_p99_ms": ("<=", 1000, "ms"),
    **{f"{at}.{r}_p99_ms": ("<=", 50, "ms") for r in reads.READS for at in ("reads_large", "reads_stripped_large")},
}

# Promises in the large log of the reads: x4 events each, 1,000,000 events in the full run.
READS_LARGE, READS_LARGE_QUICK = 250_000, 5_000


async def with_cluster(size: int, fn, *args, **kwargs):
    cluster = NatsCluster(size=size).start()
    try:
        await asyncio.sleep(1.0 if size > 1 else 0.2)  # let the cluster elect its meta leader
        return await fn(cluster, *args, **kwargs)
    finally:
        cluster.cleanup()


# The targets for the shipped stack: through `valor plan` + `valor wait`, and the engine alone.
SHIPPED_TARGETS = {"driver": 1500, "engine": 2000, "start_p99_ms": 25, "eyes_p99_ms": 50}


async def main(quick: bool, only: set[str]) -> dict:
    n = 2000 if quick else 20000
    e2e_n = 1000 if quick else 6000
    figures: dict[str, dict | float] = {}

    def want(name: str) -> bool:
        return name in only or (not only and name != "reads_stripped")

    if want("shipped"):  # the headline: make up as shipped, through the CLI and the client API
        figures["shipped"] = await shipped.shipped(300 if quick else 3000, tail=4 if quick else shipped.TAIL_SECONDS,
                                                   light_samples=30 if quick else 200)
    # Below: the engine floor, on a stripped stack (one scheduler, executors with 32 slots,
    # dispatch_ahead = 1.0, no standby, ingest, notifier, analytics or NATS users).

    if want("ceiling"):
        for size in (1, 3):
            figures[f"ceiling_r{size}"] = await with_cluster(size, measures.ceiling, n)
    async def throughput(name: str, size: int, *args, **kwargs) -> None:
        result = await with_cluster(size, measures.throughput, *args, **kwargs)
        figures[name] = result.pop("per_s")
        figures[f"{name}_cpu"] = result  # where the time went: the floor under the figure

    if want("e2e"):
        for executors in (1, 2, 4):
            await throughput(f"e2e_noop_r3_{executors}exec", 3, executors, measures.noop_plans(e2e_n))
        await throughput("e2e_noop_r3_4exec_exact_priority", 3, 4, measures.noop_plans(e2e_n), config="")
        await throughput("e2e_noop_r1_2exec", 1, 2, measures.noop_plans(e2e_n))
    if want("dag"):
        await throughput("dag_chain3_r3", 3, 4, measures.chain_plans(e2e_n // 3))
        await throughput("dag_fanout10_r3", 3, 4, measures.fanout_plans(e2e_n // 11))
    if want("latency"):
        lat = await with_cluster(3, measures.submit_to_start, 100 if quick else 400)
        figures["submit_to_start"] = lat
        figures["submit_to_start_p99_ms"] = lat["p99_ms"]
    if want("rebuild"):
        promises = 20_000 if quick else 250_000  # x4 events each: 1,000,000 events in the full run

        async def fill_and_measure(cluster):
            events = await measures.fill_log(cluster, promises)
            result = await measures.rebuild(cluster)
            result.update(await measures.restart_to_serving(cluster))  # with a snapshot, and without
            return {"log_events": events, **result}

        r = await with_cluster(1, fill_and_measure)
        figures["rebuild"] = r
        figures["rebuild_events_per_s"] = r["events_per_s"]
        figures["restart_to_serving_s"] = r["restart_to_serving_s"]
    if want("reads"):  # the headline: make up as shipped, a small log beside a large one (bench/reads.py)
        small, large = 250, READS_LARGE_QUICK if quick else READS_LARGE  # x4 events each, but 25 running
        print(f"reads: make up as shipped, {small} promises, then {large:,}", flush=True)
        figures["reads_small"] = await reads.shipped(small)
        figures["reads_large"] = await reads.shipped(large)
        _ratios(figures, "reads_small", "reads_large", "reads_ratio")
    if want("reads_stripped"):  # the engine floor: one node, one scheduler, no users; not run by default
        figures["reads_stripped_small"] = await with_cluster(1, reads.stripped, 250)
        figures["reads_stripped_large"] = await with_cluster(1, reads.stripped, READS_LARGE_QUICK if quick
                                                             else READS_LARGE)
        _ratios(figures, "reads_stripped_small", "reads_stripped_large", "reads_stripped_ratio")
    if want("memory"):
        mem = await with_cluster(1, measures.scheduler_memory, 10_000 if quick else 100_000)
        figures["scheduler_memory"] = mem
        figures["scheduler_rss_mb"] = mem["rss_mb"]
    if want("chat"):
        reply = await with_cluster(3, chat.chat_reply, 100 if quick else 300)
        figures["chat_reply_help"] = reply
        figures["chat_reply_p99_ms"] = reply["p99_ms"]  # no target in the issue
        figures["chat_reply_help_paced"] = await with_cluster(3, chat.chat_reply, 10 if quick else 30, 1.0)
        runs = [await with_cluster(3, chat.catchup) for _ in range(1 if quick else 3)]
        figures["catchup"] = {**max(runs, key=lambda r: r["seconds"]),  # the slowest run, and each
                              "runs_s": [round(r["seconds"], 2) for r in runs]}
        figures["catchup_s"] = figures["catchup"]["seconds"]
    if want("responsive"):
        loaded = await with_cluster(3, chat.under_load, 50 if quick else 250)
        figures["chat_under_load"] = loaded
        figures["chat_under_load_p99_ms"] = loaded["p99_ms"]
        # The shipped pacing: an answer may wait up to one interval behind a notice already going out.
        figures["chat_under_load_paced"] = await with_cluster(3, chat.under_load, 10 if quick else 50,
                                                              chat_interval=1.0)
    return figures


def _ratios(figures: dict, small: str, large: str, into: str) -> None:
    for r in (*reads.READS, "chat_usage"):
        key = f"{r}_p99_ms"
        figures[f"{into}.{r}"] = round(figures[large][key] / max(figures[small][key], 1e-9), 2)


def _ratio(key: str, value: float, figures: dict) -> str:
    """The figure beside what the client itself does on the same servers in the same run."""
    r3, r1 = figures.get("ceiling_r3"), figures.get("ceiling_r1")
    if key.startswith(("e2e", "dag")):
        ceiling = r3 if "_r3" in key else r1
        return f"{value / ceiling['publish_pipelined_per_s']:.3f} of pipelined publish" if ceiling else ""
    if key in ("submit_to_start_p99_ms", "chat_reply_p99_ms") and r3:  # measured on R3
        return f"{value / (1000 / r3['publish_sequential_per_s']):.1f} sequential publish round trips"
    if key == "rebuild_events_per_s" and r1:  # measured on one node
        return f"{value / r1['fetch_ack_per_s']:.2f} of fetch+ack"
    if key == "catchup_s" and r3 and isinstance(figures.get("catchup"), dict):
        return f"{figures['catchup']['messages_per_s'] / r3['publish_pipelined_per_s']:.3f} of pipelined publish"
    if key in ("restart_to_serving_s", "scheduler_rss_mb"):
        return "no client ceiling applies"
    return ""


def _mark(key: str, value: float) -> str:
    if key.startswith(("reads_ratio.", "reads_stripped_ratio.")) and not key.endswith("chat_usage"):
        return f"<= 2x of the small log {'met' if value <= 2 else 'NOT met'}"
    if (target := TARGETS.get(key)) is None:
        return ""
    op, goal, unit = target
    ok = value >= goal if op == ">=" else value <= goal
    return f"{op} {goal} {unit} {'met' if ok else 'NOT met'}"


SHIPPED_READS = ("reads_small", "reads_large", "reads_ratio")


def table(figures: dict) -> str:
    shipped_reads = {k: v for k, v in figures.items() if k.startswith(SHIPPED_READS)}  # in reads.table
    floor = {k: v for k, v in figures.items() if k != "shipped" and k not in shipped_reads
             and not k.startswith("reads_stripped")}
    out = []
    for small, large, title in (("reads_small", "reads_large", "reads, make up as shipped (p99)"),
                                ("reads_stripped_small", "reads_stripped_large", "reads, engine floor: one node, "
                                                                                 "one scheduler, no users (p99)")):
        if small in figures and large in figures:
            out.append(reads.table(figures[small], figures[large], title))
    if floor:
        out.append(_table("figure (engine floor: stripped stack)", floor))
    return "\n\n".join(out)


def _table(title: str, figures: dict) -> str:
    rows = [(title, "value", "target", "ratio to ceiling")]
    for key, value in figures.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                rows.append((f"{key}.{sub}", f"{v:,.1f}" if isinstance(v, float) else str(v),
                             _mark(f"{key}.{sub}", v), ""))
            continue
        rows.append((key, f"{value:,.1f}", _mark(key, value), _ratio(key, value, figures)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run of the harness")
    parser.add_argument("--only", nargs="*", default=[],
                        help="shipped ceiling e2e dag latency rebuild reads memory chat responsive (default: all), and reads_stripped (not in all)")
    args = parser.parse_args()
    started = time.time()
    figures = eventloop.run(main(args.quick, set(args.only)))
    if "shipped" in figures:
        print(shipped.table(figures["shipped"], SHIPPED_TARGETS), end="\n\n")
    print(table(figures))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / time.strftime("bench-%Y%m%d-%H%M%S.json", time.gmtime(started))
    out.write_text(json.dumps({"started": started, "seconds": time.time() - started, "quick": args.quick,
                               "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
                               "figures": figures}, indent=2, sort_keys=True) + "\n")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    cli()
