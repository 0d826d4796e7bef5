"""Valor on several (simulated) hosts, deployed as an operator deploys it: an executor host cut away
mid-attempt, its work finished elsewhere once.

Three NATS nodes (n1..n3, a scheduler next to n1 and n2) and two executors (e1,
e2), each on a host of its own: the shape of the three-host setup in
docs/operations.md.  Every file comes from ``deploy/render.py --target
systemd`` for these hosts (the same templates as ``make up``): the nodes speak
TLS to clients and to each other's routes, and every service starts from its
unit as systemd would, knowing only the cluster's ``tls://`` URLs, the CA and
its own user's password.  While executor e1 runs attempts, its host is cut from
everything; its work messages are redelivered after the ack wait, executor e2
runs them, and the log records one terminal result each.  Then the host comes
back and e1's late results must not be recorded a second time.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
import urllib.request

import pytest
from nats.js.errors import KeyNotFoundError

from schemas.events import Started, Succeeded
from schemas.subjects import EXECUTORS_BUCKET
from valor import bus
from valor.client import ValorClient
from valor.stack import Stack

from ..test_recovery import finish_and_check, submit_all, workload
from .cluster import MONITOR_PORT, ROUTE_PORT, NetCluster, place_unit, render_hosts
from .hosts import Network, needs_hosts

pytestmark = [needs_hosts(), pytest.mark.timeout(180)]

NODES, EXECUTOR_HOSTS = ["n1", "n2", "n3"], ["e1", "e2"]
UNITS = {  # service -> (host, its unit there)
    "scheduler-1": ("n1", "valor-scheduler@0.service"), "scheduler-2": ("n2", "valor-scheduler@1.service"),
    "executor-1": ("e1", "valor-executor@0.service"), "executor-2": ("e2", "valor-executor@0.service"),
}
E1, E2 = "e1-executor-0", "e2-executor-0"  # the rendered units name an executor after its host


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


def monitor(ip: str, path: str) -> dict:
    with urllib.request.urlopen(f"http://{ip}:{MONITOR_PORT}/{path}", timeout=2) as r:
        return json.loads(r.read())


def route_tls(ip: str, ca: ssl.SSLContext) -> str:
    """The TLS version a node's route port speaks, its certificate checked against the private CA for ``ip``.

    Without a certificate of our own the node then turns us away (routes verify their peers): the handshake
    is all this looks at.
    """
    with socket.create_connection((ip, ROUTE_PORT), timeout=2) as raw, ca.wrap_socket(raw, server_hostname=ip) as s:
        return s.version()


async def connections(cluster: NetCluster, names: set[str], timeout: float = 30) -> dict[str, list[dict]]:
    """Client connections by name over all nodes (with the user each authenticated as), once ``names`` are in."""
    deadline = time.monotonic() + timeout
    while True:
        found: dict[str, list[dict]] = {}
        for node in cluster.nodes:
            for c in monitor(node.host.ip, "connz?auth=1")["connections"] or []:
                found.setdefault(c.get("name", ""), []).append(c)
        if names <= set(found) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.3)


async def test_an_executor_host_cut_away_mid_attempt_has_its_attempts_finished_on_the_other_once(tmp_path):
    with Network(NODES + EXECUTOR_HOSTS) as net:
        rendered = render_hosts(net, tmp_path / "hosts", NODES, EXECUTOR_HOSTS)
        cluster = NetCluster(net=net, rendered=rendered).start()
        stack = Stack(cluster, schedulers=0, executors=0)
        config = tmp_path / "valor.toml"
        config.write_text("")
        # On top of the units: no operator's valor.toml, a short ack wait (the test waits for redelivery), and
        # a run directory per host (real hosts do not share a disk; these share this machine's).
        local = {"VALOR_CONFIG": str(config), "VALOR_ACK_WAIT": "3", "VALOR_LOG_LEVEL": "INFO"}
        nc = None
        try:
            streams = place_unit(stack, net, rendered, "streams", "n1", "valor-streams.service", **local)
            streams.start()
            assert await asyncio.to_thread(streams.proc.wait, 90) == 0, streams.log.read_text()[-2000:]
            # e2 starts once e1 runs attempts: with both up, e2 could take the whole workload before e1 is ready.
            services = {name: place_unit(stack, net, rendered, name, host, unit, **local,
                                         VALOR_RUN_DIR=str(tmp_path / "run" / host))
                        for name, (host, unit) in UNITS.items()}
            for name, service in services.items():
                if name != "executor-2":
                    service.start()
            assert cluster.url.startswith("tls://")
            nc = await bus.connect(cluster.url, name="test", **rendered.login())
            client = ValorClient(nc)

            # TLS between hosts: every node's routes demand and verify a certificate, and are up (to both peers).
            for node in cluster.nodes:
                varz = monitor(node.host.ip, "varz")
                assert varz["tls_required"] and varz["cluster"]["tls_required"] and varz["cluster"]["tls_verify"]
                assert route_tls(node.host.ip, rendered.login()["tls"]).startswith("TLS"), node.name
                peers = {r["remote_name"] for r in monitor(node.host.ip, "routez")["routes"]}
                assert peers == set(NODES) - {node.name}, peers

            e1 = (await connections(cluster, {f"executor-{E1}"}))[f"executor-{E1}"]
            # Attempts long enough to be cut mid-way however slowly the log is read under load.
            ids = await submit_all(client, workload(3, seconds=4))
            cut = await started_on(client, E1, ids)
            net.isolate("e1")
            services["executor-2"].start()
            # Each service connected over TLS as its own user (its password, handed over by the unit).
            users = {"scheduler": "scheduler", f"executor-{E2}": "executor", "test": "cli"}
            conns = await connections(cluster, set(users))
            conns[f"executor-{E1}"], users[f"executor-{E1}"] = e1, "executor"
            for name, user in users.items():
                assert name in conns, sorted(conns)
                for c in conns[name]:
                    assert c["authorized_user"] == user and c["tls_version"].startswith("1."), c
            assert len(conns["scheduler"]) == 2  # the active one and its standby

            # Everything finishes without e1: what it was running is redelivered to the executor on e2.
            assert set((await client.wait(ids, timeout=90, poll=0.5)).values()) == {"succeeded"}
            events = [e for _, e in await client.events()]
            for pid in cut:
                assert any(isinstance(e, Started) and e.id == pid and e.executor == E2 for e in events), pid

            kv = await nc.jetstream().key_value(EXECUTORS_BUCKET)
            before = await revision(kv, E1)  # 0: its entry expired while it was cut away
            net.heal()  # e1 returns with results it may still try to record
            await until_beats(kv, E1, before)
            await finish_and_check(cluster.url, ids, stack, **rendered.login())  # one terminal result each
            results = [e.id for _, e in await client.events() if isinstance(e, Succeeded) and e.id in ids]
            assert sorted(results) == sorted(ids)
        finally:
            if nc is not None:
                await nc.close()
            stack.kill()
            cluster.cleanup()
        logs = stack.logs()
        for user in ("admin", "scheduler", "executor", "cli"):
            assert rendered.password(user) not in logs, f"the {user} password is in a log"
