"""A 3-node NATS cluster whose nodes each run on their own simulated host (``tests.net.hosts``).

The same shape as ``valor.natsserver.NatsCluster`` (``nodes``, ``url``,
``root``, ``start``, ``cleanup``), so ``valor.stack.Stack`` and the chaos
harness use it unchanged; services are placed on hosts by wrapping their argv
(``place``).  Every node listens on its host's address (clients 4222, routes
6222, the same on every host as on real machines), with file storage and
``sync_interval: always`` as in production.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from valor.natsserver import Node, server_binary
from valor.stack import Stack

from .hosts import Host, Network

CLIENT_PORT = 4222
ROUTE_PORT = 6222
MONITOR_PORT = 8222


def host_config(name: str, ip: str, store: Path, peers: list[str], max_file: str | None = None) -> str:
    routes = ", ".join(f'"nats://{p}:{ROUTE_PORT}"' for p in peers)
    limit = [f"  max_file_store: {max_file}"] if max_file else []
    return "\n".join([
        f'server_name: "{name}"', f"host: {ip}", f"port: {CLIENT_PORT}", f"http: {ip}:{MONITOR_PORT}",
        "jetstream {", f'  store_dir: "{store}"', "  sync_interval: always", *limit, "}",
        "cluster {", '  name: "valor"', f"  listen: {ip}:{ROUTE_PORT}", f"  routes: [{routes}]", "}",
    ]) + "\n"


@dataclass
class HostNode(Node):
    host: Host | None = None
    net: Network | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host.ip}:{self.port}"

    def start(self) -> None:
        """Started inside its host; ready when its log says so (the harness may be cut off from it)."""
        before = self.log.read_text().count("Server is ready") if self.log.exists() else 0
        out = open(self.log, "ab")
        self.proc = self.net.track(subprocess.Popen(self.host.exec_argv([server_binary(), "-c", str(self.config)]),
                                                    stdout=out, stderr=out))
        out.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server {self.name} exited: {self.log.read_text()[-2000:]}")
            if self.log.read_text(errors="replace").count("Server is ready") > before:
                return
            time.sleep(0.05)
        raise RuntimeError(f"nats-server {self.name} on {self.host.ip} was not ready in 20 s")


@dataclass
class NetCluster:
    """Nodes n1..n3 on hosts of the same names in ``net``."""

    net: Network
    size: int = 3
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="valor-netnats-")))
    nodes: list[HostNode] = field(default_factory=list)
    stores: dict[str, Path] = field(default_factory=dict)  # node name -> store dir (a test may mount it small)

    def __post_init__(self) -> None:
        names = [f"n{i + 1}" for i in range(self.size)]
        for name in names:
            host = self.net[name]
            store = self.stores.get(name) or self.root / name
            store.mkdir(parents=True, exist_ok=True)
            self.stores[name] = store
            peers = [self.net[o].ip for o in names if o != name]
            config = self.root / f"{name}.conf"
            config.write_text(host_config(name, host.ip, store, peers))
            self.nodes.append(HostNode(name, CLIENT_PORT, config, self.root / f"{name}.log", host=host, net=self.net))

    def node(self, name: str) -> HostNode:
        return next(n for n in self.nodes if n.name == name)

    @property
    def url(self) -> str:
        return ",".join(n.url for n in self.nodes)

    def start(self) -> NetCluster:
        for node in self.nodes:
            node.start()
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def cleanup(self) -> None:
        self.stop()
        if not os.environ.get("VALOR_KEEP_NATS"):
            shutil.rmtree(self.root, ignore_errors=True)


def place(stack: Stack, net: Network, where: dict[str, str]) -> None:
    """Run each named service on its host (``where``: service -> host); the rest stay with the harness."""
    for service, host in where.items():
        s = stack.services[service]
        s.argv = net[host].exec_argv(s.argv)
