"""A client whose NATS node is cut off silently moves to another node within ~20 s (decision 71)."""

from __future__ import annotations

import asyncio
import time

import pytest

from valor import bus

from .cluster import NetCluster
from .hosts import Network, needs_hosts

pytestmark = [needs_hosts(), pytest.mark.timeout(90)]


async def test_a_client_whose_node_is_cut_off_silently_moves_to_another_node_within_20_s():
    with Network(["n1", "n2", "n3"]) as net:
        cluster = NetCluster(net=net).start()
        nc = None
        try:
            nc = await bus.connect(cluster.url, name="test")
            await nc.flush(timeout=5)
            ip = nc.connected_url.hostname
            cut = next(n.name for n in cluster.nodes if n.host.ip == ip)
            net.isolate(cut)  # silently: no RST, the TCP connection stays open
            t0 = time.monotonic()
            while True:
                try:
                    await nc.flush(timeout=1)
                    if nc.connected_url.hostname != ip:
                        break
                except Exception:
                    pass
                assert time.monotonic() - t0 < 40, "still on the cut-off node after 40 s"
                await asyncio.sleep(0.2)
            took = time.monotonic() - t0
            # 5 s pings, stale at the third unanswered: 15-20 s (nats-py's default took 354 s).
            assert took < 25, took
        finally:
            if nc is not None:
                await nc.close()
            cluster.cleanup()
