"""Two of three NATS nodes gone: the CLI says the cluster has no quorum, and nothing is lost."""

from __future__ import annotations

import asyncio
import time

import pytest

from valor import bus
from valor.natsserver import NatsCluster

from .conftest import Stack

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def cluster():
    cluster = NatsCluster(size=3).start()
    yield cluster
    cluster.cleanup()


@pytest.fixture(scope="module")
def stack(cluster):
    async def r3_streams():
        nc = await bus.connect(cluster.url, name="setup")
        try:
            await bus.ensure_streams(nc.jetstream(), 3)
        finally:
            await nc.close()

    asyncio.run(r3_streams())
    running = Stack(cluster.url).start()
    yield running
    running.stop()


def test_two_nodes_down_refuses_writes_saying_so_and_a_returning_node_resumes_with_nothing_lost(
        valor, stack, cluster):
    before = valor("submit", "--idempotency-key", "before-the-loss", "acknowledged")
    assert before.exit_code == 0, before.output
    survivor, *gone = cluster.nodes
    for node in gone:
        node.kill()

    refused = valor("submit", "--idempotency-key", "during-the-loss", "refused")
    assert refused.exit_code == 3, refused.output
    assert refused.stderr.startswith("valor: the cluster has no quorum: 1 of 3 nodes; writes are refused"), \
        refused.stderr

    gone[0].start()
    deadline = time.monotonic() + 90
    while (after := valor("submit", "--idempotency-key", "during-the-loss", "refused")).exit_code != 0:
        assert time.monotonic() < deadline, after.output
        time.sleep(0.5)
    # the acknowledged one is there, once; the refused one, retried with its key, was created once
    again = valor("submit", "--idempotency-key", "before-the-loss", "acknowledged")
    assert again.exit_code == 0 and again.stdout == before.stdout
    assert int(after.stdout) != int(before.stdout)
    ok = valor("wait", before.stdout.strip(), after.stdout.strip(), "--timeout", "60")
    assert ok.exit_code == 0, ok.output
