"""Valor on several (simulated) hosts: an executor host cut away mid-attempt, its work finished elsewhere once.

Three NATS nodes (n1..n3, a scheduler next to n1 and n2) and two executors (e1,
e2), each on a host of its own: the shape of the three-host setup in
docs/operations.md.  Services know only the cluster URLs.  While executor-1
runs attempts, its host is cut from everything; its work messages are
redelivered after the ack wait, executor-2 runs them, and the log records one
terminal result each.  Then the host comes back and executor-1's late results
must not be recorded a second time.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from nats.js.errors import KeyNotFoundError

from schemas.events import Started, Succeeded
from schemas.subjects import EXECUTORS_BUCKET
from valor import bus
from valor.client import ValorClient
from valor.stack import Stack

from ..test_recovery import finish_and_check, submit_all, workload
from .cluster import NetCluster, place
from .hosts import Network, needs_hosts

pytestmark = [needs_hosts(), pytest.mark.timeout(180)]


async def started_on(client: ValorClient, executor: str, ids: list[int], timeout: float = 30) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = await client.projection()
        running = {e.id for _, e in await client.events() if isinstance(e, Started) and e.executor == executor
                   and e.id in ids and not state.promises[e.id].terminal}
        if running:
            return running
        await asyncio.sleep(0.2)
    raise AssertionError(f"{executor} never started an attempt")


async def revision(kv, key: str) -> int:
    try:
        return (await kv.get(key)).revision
    except KeyNotFoundError:
        return 0


async def until_beats(kv, executor: str, after: int, timeout: float = 60) -> None:
    """Until the executor's heartbeat lands again: it talks to the cluster once more."""
    deadline = time.monotonic() + timeout
    while await revision(kv, executor) <= after:
        assert time.monotonic() < deadline, f"{executor} never came back"
        await asyncio.sleep(0.3)


async def test_an_executor_host_cut_away_mid_attempt_has_its_attempts_finished_on_the_other_once():
    with Network(["n1", "n2", "n3", "e1", "e2"]) as net:
        cluster = NetCluster(net).start()
        stack = Stack(cluster, schedulers=2, executors=2, slots=4)
        place(stack, net, {"scheduler-1": "n1", "scheduler-2": "n2", "executor-1": "e1", "executor-2": "e2"})
        nc = None
        try:
            nc = await bus.connect(cluster.url, name="test")
            for _ in range(60):  # a fresh cluster elects its meta leader first
                try:
                    await bus.ensure_streams(nc.jetstream(), 3)
                    break
                except Exception:
                    await asyncio.sleep(0.5)
            stack.start()
            client = ValorClient(nc)
            ids = await submit_all(client, workload(3, seconds=1.5))

            cut = await started_on(client, "executor-1", ids)
            net.isolate("e1")
            # Everything finishes without e1: what it was running is redelivered to executor-2.
            assert set((await client.wait(ids, timeout=90, poll=0.5)).values()) == {"succeeded"}
            events = [e for _, e in await client.events()]
            for pid in cut:
                assert any(isinstance(e, Started) and e.id == pid and e.executor == "executor-2" for e in events), pid

            kv = await nc.jetstream().key_value(EXECUTORS_BUCKET)
            before = await revision(kv, "executor-1")  # 0: its entry expired while it was cut away
            net.heal()  # e1 returns with results it may still try to record
            await until_beats(kv, "executor-1", before)
            await finish_and_check(cluster.url, ids, stack)  # one terminal result each, no violation
            results = [e.id for _, e in await client.events() if isinstance(e, Succeeded) and e.id in ids]
            assert sorted(results) == sorted(ids)
        finally:
            if nc is not None:
                await nc.close()
            stack.kill()
            cluster.cleanup()
