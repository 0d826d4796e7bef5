"""Each figure of ``make bench``: a coroutine that sets something up, measures, tears down.

Everything runs on the durable configs (file storage, ``sync_interval: always``),
on real nats-server processes and real service processes.
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import time

from nats.js.api import StorageType, StreamConfig

from schemas.commands import NewPromise as T
from schemas.events import Created, Started, decode_promise_event
from valor import bus
from valor.client import ValorClient
from valor.natsserver import NatsCluster
from valor.stack import Stack


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[k]


# --- 1. the client's own ceiling -------------------------------------------------------


async def ceiling(cluster: NatsCluster, n: int) -> dict[str, float]:
    nc = await bus.connect(cluster.url, name="bench-ceiling")
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="BENCH", subjects=["bench.>"], storage=StorageType.FILE,
                                     num_replicas=len(cluster.nodes)))
    payload = b'{"type":"started","id":1,"attempt":1,"executor":"x","at":1.0}'
    t0 = time.perf_counter()
    seq_n = max(200, n // 10)
    for _ in range(seq_n):
        await js.publish("bench.seq", payload)
    sequential = seq_n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    futures = [await js.publish_async("bench.async", payload) for _ in range(n)]
    await asyncio.gather(*futures)
    pipelined = n / (time.perf_counter() - t0)
    sub = await js.pull_subscribe("bench.async", durable="bench", stream="BENCH")
    t0 = time.perf_counter()
    got = 0
    while got < n:
        msgs = await sub.fetch(min(256, n - got), timeout=5)
        for m in msgs:
            await m.ack()
        got += len(msgs)
    fetch_ack = n / (time.perf_counter() - t0)
    # What a write costs the servers, by how many are in flight together: the floor under
    # every engine figure (each promise is five writes and an ack).
    depth_cost = {}
    for depth in (1, 16, 256):
        count = max(depth * 8, min(n, 3000))
        before = cluster_cpu(cluster)
        for _ in range(0, count, depth):
            await asyncio.gather(*[await js.publish_async("bench.depth", payload) for _ in range(depth)])
        depth_cost[f"server_cpu_us_per_write_depth{depth}"] = 1e6 * (cluster_cpu(cluster) - before) / count
    await js.delete_stream("BENCH")
    await nc.close()
    return {"publish_sequential_per_s": sequential, "publish_pipelined_per_s": pipelined,
            "fetch_ack_per_s": fetch_ack, **depth_cost}


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a live process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cluster_cpu(cluster: NatsCluster) -> float:
    return sum(cpu_seconds(node.proc.pid) for node in cluster.nodes)


# --- 2 and 3. end-to-end throughput ------------------------------------------------------


async def _wait_for_executors(nc, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            kv = await nc.jetstream().key_value("valor_executors")
            if len(await kv.keys()) >= count:
                return
        except Exception:
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{count} executors did not announce themselves")


# The throughput runs hand each executor slot its next item ahead (valor.toml
# ``queues.<name>.dispatch_ahead``); ``config=""`` keeps the shipped strict priority order.
AHEAD = "[queues.default]\ndispatch_ahead = 1.0\n"


async def throughput(cluster: NatsCluster, executors: int, plans: list[list[T]], slots: int = 32,
                     config: str = AHEAD, watch=None) -> dict[str, float]:
    """Promises per second from the first submission to the last ``succeeded``, and the CPU
    each promise cost the servers, the scheduler, the executors and this client.

    ``watch(stack)``, if given, is called once the services are up and returns a
    function called when the load is done (``bench.profile`` attaches py-spy so).
    """
    config_file = cluster.root / "bench-valor.toml"
    config_file.write_text(config)
    stack = Stack(cluster, schedulers=1, executors=executors, slots=slots,
                  env_extra={"VALOR_LOG_LEVEL": "WARNING", "VALOR_ACK_WAIT": "30",
                             "VALOR_CONFIG": str(config_file)}).start()
    nc = await bus.connect(cluster.url, name="bench-e2e")
    try:
        await _wait_for_executors(nc, executors)
        client = ValorClient(nc, by="bench")
        total = sum(len(p) for p in plans)
        done: set[int] = set()
        finished = asyncio.Event()

        async def on_succeeded(msg):
            done.add(int(msg.subject.split(".")[1]))
            if len(done) >= total:
                finished.set()

        await nc.subscribe("promise.*.succeeded", cb=on_succeeded)
        unwatch = watch(stack) if watch else None
        processes = {name: svc.proc.pid for name, svc in stack.services.items()}
        before = {name: cpu_seconds(pid) for name, pid in processes.items()}
        servers, me = cluster_cpu(cluster), time.process_time()
        t0 = time.perf_counter()
        await asyncio.gather(*[client.submit(*plan, timeout=120) for plan in plans])
        await asyncio.wait_for(finished.wait(), timeout=600)
        seconds = time.perf_counter() - t0
        used = {name: cpu_seconds(pid) - before[name] for name, pid in processes.items()}
        if unwatch:
            unwatch()
        per = 1e6 / total
        return {
            "per_s": total / seconds,
            "server_cpu_us_per_promise": (cluster_cpu(cluster) - servers) * per,
            "scheduler_cpu_us_per_promise": sum(v for k, v in used.items() if k.startswith("scheduler")) * per,
            "executors_cpu_us_per_promise": sum(v for k, v in used.items() if k.startswith("executor")) * per,
            "client_cpu_us_per_promise": (time.process_time() - me) * per,
            "cpu_busy_of_all_cores": (cluster_cpu(cluster) - servers + sum(used.values())
                                      + time.process_time() - me) / seconds / (os.cpu_count() or 1),
        }
    finally:
        await nc.close()
        stack.kill()


def noop_plans(n: int, per_command: int = 100) -> list[list[T]]:
    return [[T(type="noop", title=f"n{i + j}") for j in range(min(per_command, n - i))]
            for i in range(0, n, per_command)]


def chain_plans(chains: int) -> list[list[T]]:
    return [[T(name="a", type="noop"), T(name="b", type="noop", after=["a"]), T(name="c", type="noop", after=["b"])]
            for _ in range(chains)]


def fanout_plans(groups: int) -> list[list[T]]:
    return [[T(name=f"f{i}", type="noop") for i in range(10)] + [T(name="join", type="noop",
                                                                   after=[f"f{i}" for i in range(10)])]
            for _ in range(groups)]


# --- 4. latency at light load --------------------------------------------------------------


async def submit_to_start(cluster: NatsCluster, samples: int) -> dict[str, float]:
    """From the submit request leaving the client to ``started`` stored, one promise at a time."""
    stack = Stack(cluster, schedulers=1, executors=1, slots=4,
                  env_extra={"VALOR_LOG_LEVEL": "WARNING", "VALOR_ACK_WAIT": "30"}).start()
    nc = await bus.connect(cluster.url, name="bench-latency")
    try:
        await _wait_for_executors(nc, 1)
        return await time_to_start(nc, ValorClient(nc, by="bench"), samples)
    finally:
        await nc.close()
        stack.kill()


async def time_to_start(nc, client: ValorClient, samples: int) -> dict[str, float]:
    """Submit one no-op at a time; from the submit request leaving ``client`` to its ``started`` stored."""
    started: dict[int, float] = {}
    arrived = asyncio.Event()

    async def on_started(msg):
        event = decode_promise_event(msg.data)
        if isinstance(event, Started):
            started[event.id] = time.time()
            arrived.set()

    sub = await nc.subscribe("promise.*.started", cb=on_started)
    try:
        latencies = []
        for _ in range(samples):
            arrived.clear()
            t0 = time.time()
            pid = (await client.submit(T(type="noop")))["0"]
            while pid not in started:
                await asyncio.wait_for(arrived.wait(), timeout=10)
                arrived.clear()
            latencies.append((started[pid] - t0) * 1000)
            await asyncio.sleep(0.01)
    finally:
        await sub.unsubscribe()
    return {"samples": len(latencies), "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95),
            "p99_ms": percentile(latencies, 99), "mean_ms": statistics.fmean(latencies)}


# --- 5 and 6. rebuild and memory -----------------------------------------------------------


async def fill_log(cluster: NatsCluster, promises: int) -> int:
    """Write a realistic log directly (created, dispatched, started, succeeded per promise)."""
    from schemas.events import Dispatched, Succeeded, encode

    nc = await bus.connect(cluster.url, name="bench-fill")
    js = nc.jetstream()
    await bus.ensure_streams(js, len(cluster.nodes))
    now = time.time()
    pending = []
    for pid in range(1, promises + 1):
        for event in (Created(at=now, id=pid, title=f"p{pid}"), Dispatched(at=now, id=pid, attempt=1),
                      Started(at=now, id=pid, attempt=1, executor="x"),
                      Succeeded(at=now, id=pid, attempt=1, result={"ok": True})):
            pending.append(await js.publish_async(bus.event_subject(event), encode(event)))
        if len(pending) >= 4000:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    await nc.close()
    return promises * 4


async def rebuild(cluster: NatsCluster) -> dict[str, float]:
    """Fold the whole log the way the CLI's replay does: events per second."""
    nc = await bus.connect(cluster.url, name="bench-rebuild")
    try:
        t0 = time.perf_counter()
        state = await ValorClient(nc).projection()
        seconds = time.perf_counter() - t0
        events = state.applied + state.ignored
        return {"events": events, "seconds": seconds, "events_per_s": events / seconds}
    finally:
        await nc.close()


async def restart_to_serving(cluster: NatsCluster, timeout: float = 300) -> dict[str, float]:
    """Seconds from starting a scheduler process to it answering a command: first over the
    whole log (no snapshot yet), then again once that scheduler stored its snapshot and stopped."""
    stack = Stack(cluster, schedulers=1, executors=0, env_extra={"VALOR_LOG_LEVEL": "INFO"})
    scheduler = stack.services["scheduler-1"]
    nc = await bus.connect(cluster.url, name="bench-restart")
    client = ValorClient(nc, by="bench")

    async def serving() -> float:
        t0 = time.perf_counter()
        stack.start()
        await client.submit(T(type="noop"), timeout=timeout)
        return time.perf_counter() - t0

    try:
        full = await serving()
        deadline = time.monotonic() + timeout  # the leader stores one as soon as it has caught up
        while "projection snapshot stored" not in scheduler.log.read_text():
            assert time.monotonic() < deadline and scheduler.alive, scheduler.log.read_text()[-3000:]
            await asyncio.sleep(0.2)
        stack.stop()  # SIGTERM, as a deploy does: the lease is released
        restart = await serving()
        log = scheduler.log.read_text()
        stored = re.search(r"snapshot stored: seq \d+, \d+ promises, (\d+) bytes \((\d+) before compression\), "
                           r"encoded in ([\d.]+)s, compressed in ([\d.]+)s, stored in ([\d.]+)s", log)
        loaded = re.search(r"snapshot loaded: .* bytes in ([\d.]+)s", log)
        assert stored and loaded, log[-3000:]
        return {"restart_to_serving_s": restart, "restart_full_replay_s": full,
                "snapshot_mb": int(stored[1]) / 1e6, "snapshot_uncompressed_mb": int(stored[2]) / 1e6,
                "snapshot_encode_s": float(stored[3]), "snapshot_compress_s": float(stored[4]),
                "snapshot_store_s": float(stored[5]), "snapshot_load_s": float(loaded[1])}
    finally:
        await nc.close()
        stack.kill()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def scheduler_memory(cluster: NatsCluster, open_promises: int) -> dict[str, float]:
    """Scheduler RSS holding ``open_promises`` queued promises (no executor takes them)."""
    stack = Stack(cluster, schedulers=1, executors=0, env_extra={"VALOR_LOG_LEVEL": "WARNING"}).start()
    nc = await bus.connect(cluster.url, name="bench-memory")
    try:
        client = ValorClient(nc, by="bench")
        plans = noop_plans(open_promises, per_command=500)
        for i in range(0, len(plans), 8):
            await asyncio.gather(*[client.submit(*p, timeout=300) for p in plans[i:i + 8]])
        await asyncio.sleep(1)
        return {"open_promises": open_promises, "rss_mb": rss_mb(stack.services["scheduler-1"].proc.pid),
                "baseline_pid": os.getpid()}
    finally:
        await nc.close()
        stack.kill()
