"""A full disk under one NATS node's store: what NATS does, what Valor reports, and the way back.

Node n3's store is a 64 MB tmpfs of its own; mid-workload a file fills it.
Seen (nats-server 2.10, and asserted here): n3's next write fails with "no
space left on device", it logs "JetStream out of resources, will be DISABLED"
and shuts JetStream down on that node only.  n1 and n2 still make a quorum:
promises are created, run and finish; ``valor status`` shows n3 lagging on
every stream.  Freeing the space is not enough — JetStream stays off on n3
(checked: it is still behind seconds later) — restarting the node is the
recovery: it catches up and nothing acknowledged was lost.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time

import pytest

from schemas import subjects
from valor import render
from valor.natsserver import NatsCluster

from ..test_recovery import finish_and_check, started_stack, submit_all, workload

pytestmark = [pytest.mark.timeout(150),
              pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs for one node's store needs root")]

STREAMS = (subjects.PROMISES, subjects.WORK, subjects.COMMANDS)


@pytest.fixture
def small_store_cluster():
    cluster = NatsCluster(size=3)
    store = cluster.root / "n3"
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "valor-full-disk", str(store)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        cluster.cleanup()
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield cluster.start(), store
    finally:
        cluster.stop()
        subprocess.run(["umount", "-l", str(store)], capture_output=True)
        cluster.cleanup()


async def n3_behind(js) -> list[str]:
    """The streams on which n3 is not a current replica (as ``valor status`` shows them)."""
    behind = []
    for stream in STREAMS:
        info = await js.stream_info(stream)
        for r in (info.cluster.replicas or []) if info.cluster else []:
            if r.name == "n3" and (not r.current or r.offline):
                behind.append(stream)
    return behind


async def until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if found := await predicate():
                return found
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        await asyncio.sleep(0.3)


async def test_a_full_disk_on_one_node_keeps_valor_running_on_two_and_the_node_catches_up_after_a_restart(
        small_store_cluster):
    cluster, store = small_store_cluster
    n3 = cluster.nodes[2]
    stack, nc, client = await started_stack(cluster, schedulers=1, executors=1)
    filler = store / "filler"
    try:
        ids = await submit_all(client, workload(1))
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M"], capture_output=True)  # until ENOSPC
        assert os.statvfs(store).f_bavail == 0

        more = await submit_all(client, workload(2))  # n1 + n2 are a quorum: still accepted
        assert await client.wait(ids + more, timeout=60, poll=0.5) == {i: "succeeded" for i in ids + more}
        log = n3.log.read_text()
        assert "no space left on device" in log and "JetStream out of resources, will be DISABLED" in log

        js = nc.jetstream()
        behind = await until(lambda: n3_behind(js), 20, "n3 shown behind on a stream")
        status = render.status_text(await client.status())
        assert "n3 lagging" in status or "n3 offline" in status, status

        filler.unlink()
        await asyncio.sleep(3)
        more += await submit_all(client, workload(1))
        assert await n3_behind(js), "n3 came back without a restart (NATS changed: update docs/guarantees.md)"

        n3.stop()
        n3.start()
        await until(lambda: _all_current(js), 60, "every replica current after n3's restart")
        await finish_and_check(cluster.nodes[0].url, ids + more, stack)
        assert behind
    finally:
        await nc.close()
        stack.kill()


async def _all_current(js) -> bool:
    for stream in STREAMS:
        c = (await js.stream_info(stream)).cluster
        if not c or not c.leader or len(c.replicas or []) != 2 or not all(r.current for r in c.replicas):
            return False
    return True
