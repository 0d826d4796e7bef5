"""An executor that starts while the cluster cannot answer waits for it instead of exiting (decision 67)."""

from __future__ import annotations

import asyncio

import pytest

from schemas import subjects
from services.executor.consumer import consumer_name
from services.executor.worker import Executor
from valor import bus
from valor.natsserver import NatsCluster

pytestmark = pytest.mark.timeout(120)


async def test_an_executor_starting_without_a_quorum_waits_and_is_up_once_a_node_returns():
    cluster = NatsCluster(size=3).start()
    try:
        nc = await bus.connect(cluster.url, name="executor")
        await bus.ensure_streams(nc.jetstream(), 3)
        survivor = next(n for n in cluster.nodes if n.port == nc.connected_url.port)
        gone = [n for n in cluster.nodes if n is not survivor]
        for node in gone:
            node.kill()
        executor = Executor(nc, None, "default=1", executor_id="slow-start", fetch_timeout=0.2,
                            heartbeat_interval=0.3)
        starting = asyncio.create_task(executor.start())
        done, _ = await asyncio.wait({starting}, timeout=6)  # its consumer cannot be made: JetStream times out
        assert not done, starting.exception()  # still trying, not exited
        gone[0].start()
        await asyncio.wait_for(starting, timeout=60)
        # The consumer exists, but its own group may still be electing a leader on a cluster
        # that has just regained its quorum: asking it needs the same patience.
        info = await bus.patiently("consumer info", lambda: nc.jetstream().consumer_info(
            subjects.WORK, consumer_name("default")), patience=30)
        assert info.name == consumer_name("default")
        await executor.stop(grace=1.0)
        await nc.close()
    finally:
        cluster.cleanup()
