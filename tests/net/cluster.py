"""A 3-node NATS cluster whose nodes each run on their own simulated host (``tests.net.hosts``).

The same shape as ``valor.natsserver.NatsCluster`` (``nodes``, ``url``,
``root``, ``start``, ``cleanup``), so ``valor.stack.Stack`` and the chaos
harness use it unchanged; services are placed on hosts by wrapping their argv
(``place``).  Every node listens on its host's address (clients 4222, routes
6222, the same on every host as on real machines), with file storage and
``sync_interval: always`` as in production.

Two kinds of configuration: plain (``host_config``: no TLS, no users, for the
fault tests), or the files an operator deploys (``render_hosts``: what
``deploy/render.py --target systemd`` renders for these hosts, TLS on client
and route connections, one user per service).  A rendered cluster starts each
node's unit as systemd would (tests/deploy/systemd_unit.py) inside its host,
and ``place_unit`` does the same for a service's unit.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from valor import bus
from valor.natsserver import NatsCluster, Node, server_binary
from valor.stack import Service, Stack

from ..deploy.conftest import ROOT  # puts deploy/ on sys.path: its scripts import each other by name
from ..deploy.systemd_unit import Process, process
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
class Rendered:
    """What ``deploy/hosts.py::render_systemd`` made for the simulated hosts: ``out/<host>/etc/...`` per host."""

    out: Path
    placed: dict[str, list[str]]  # host -> the units it enables

    def tree(self, host: str) -> Path:
        return self.out / host

    def password(self, user: str) -> str:
        return (self.out / "secrets" / f"nats-{user}.password").read_text().strip()

    @property
    def ca(self) -> Path:
        return self.out / "ca" / "ca.pem"

    def unit(self, host: str, unit: str) -> Process:
        """``unit`` of ``host`` as systemd would start it there (its credentials copied to a private directory)."""
        if unit not in self.placed[host]:
            raise ValueError(f"{host} does not enable {unit}: {self.placed[host]}")
        return process(self.tree(host), unit, self.out / "credentials" / host / unit)

    def login(self, user: str = bus.CLI_USER) -> dict:
        """bus.connect's options for a client of the rendered cluster as ``user``, trusting its CA only."""
        return {"user": user, "password": self.password(user),
                "tls": bus.tls_context({"VALOR_NATS_CA": str(self.ca)})}


def render_hosts(net: Network, out: Path, nodes: list[str], executors: list[str]) -> Rendered:
    """The systemd files for ``nodes`` (the three NATS hosts) and ``executors`` (executor-only hosts) of ``net``.

    Rendered for this checkout (its .venv), each node listening on its host's
    own address with the production ports, the stores under ``out/state``.
    """
    import hosts as deploy_hosts  # deploy/hosts.py and render.py
    import render

    placed = deploy_hosts.render_systemd(
        out, ROOT, [(n, net[n].ip) for n in nodes], [(e, net[e].ip) for e in executors],
        render.Ports((CLIENT_PORT,), (ROUTE_PORT,), (MONITOR_PORT,)), 9100, prefix=ROOT,
        monitor_bind=None, bind=None, state=out / "state")
    return Rendered(out, placed)


@dataclass
class HostNode(Node):
    host: Host | None = None
    net: Network | None = None
    unit: Process | None = None  # a rendered node: its argv, environment and working directory
    scheme: str = "nats"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host.ip}:{self.port}"

    def start(self) -> None:
        """Started inside its host; ready when its log says so (the harness may be cut off from it)."""
        before = self.log.read_text().count("Server is ready") if self.log.exists() else 0
        out = open(self.log, "ab")
        if self.unit is not None:
            argv, env, cwd = self.unit.argv, self.unit.env, self.unit.cwd
        else:
            argv, env, cwd = [server_binary(), "-c", str(self.config)], None, None
        self.proc = self.net.track(subprocess.Popen(self.host.exec_argv(argv), stdout=out, stderr=out, env=env,
                                                    cwd=cwd))
        out.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server {self.name} exited: {self.log.read_text()[-2000:]}")
            if self.log.read_text(errors="replace").count("Server is ready") > before:
                return
            time.sleep(0.05)
        raise RuntimeError(f"nats-server {self.name} on {self.host.ip} was not ready in 20 s")


@dataclass(kw_only=True)
class NetCluster(NatsCluster):
    """Nodes n1..n3 on hosts of the same names in ``net``, plain or from ``rendered`` files; started,
    stopped and cleaned up as a local cluster is (only where the nodes run differs)."""

    net: Network
    size: int = 3
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="valor-netnats-")))
    nodes: list[HostNode] = field(default_factory=list)
    stores: dict[str, Path] = field(default_factory=dict)  # node name -> store dir (a test may mount it small)
    rendered: Rendered | None = None

    def __post_init__(self) -> None:
        names = [f"n{i + 1}" for i in range(self.size)]
        if self.rendered is not None:
            for name in names:
                unit = self.rendered.unit(name, "valor-nats.service")
                self.stores[name] = self.rendered.out / "state" / "nats" / name  # where render_hosts put it
                self.nodes.append(HostNode(name, CLIENT_PORT, Path(unit.argv[-1]), self.root / f"{name}.log",
                                           host=self.net[name], net=self.net, unit=unit, scheme="tls"))
            return
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


def place(stack: Stack, net: Network, where: dict[str, str]) -> None:
    """Run each named service on its host (``where``: service -> host); the rest stay with the harness."""
    for service, host in where.items():
        s = stack.services[service]
        s.argv = net[host].exec_argv(s.argv)


def place_unit(stack: Stack, net: Network, rendered: Rendered, name: str, host: str, unit: str,
               **override: str) -> Service:
    """Add service ``name``: ``unit`` of the rendered ``host``, run inside that host as systemd would.

    ``override`` is what the test sets on top of the unit's environment (a short ack wait, a run directory
    of its own where hosts share this machine's disk).
    """
    p = rendered.unit(host, unit)
    service = Service(name, net[host].exec_argv(p.argv), {**p.env, **override}, stack.nats.root / f"{name}.log",
                      cwd=p.cwd)
    stack.services[name] = service
    return service
