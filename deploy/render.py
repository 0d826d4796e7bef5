"""Render the local cluster's configs into var/: NATS nodes, supervisord, ports.

    python deploy/render.py [--root DIR] [--var DIR] [--venv DIR] [--tls]
                            [--nats-port-base 4222] [--cluster-port-base 6222]
                            [--monitor-port-base 8222]
    python deploy/render.py --target systemd|compose --out DIR ...   (real hosts: deploy/hosts.py)

Node i (1..3) listens on base+i-1 for each kind of port.  A service program
is kept in supervisord.conf only when services/<name>/__main__.py exists.
NATS users (deploy/nats/permissions.toml) get a password each, generated once
into var/secrets/nats-<user>.password (0600); var/nats/auth.conf (0600) holds
them with their permissions and every node includes it.  The cluster's URL and
the `cli` user's password file go to the context the `valor` CLI reads from any
directory (valor/context.py: ~/.config/valor/context.json unless --context).
Standard library only: `make up` runs it before anything else exists.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from string import Template

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run as a script from deploy/: valor.context (stdlib only) is one up
sys.path.insert(0, str(HERE))  # its neighbours (certs.py) when loaded from a test

import certs  # noqa: E402

from valor import context  # noqa: E402

NODES = ("n1", "n2", "n3")
SERVICES = ("ingest", "scheduler", "executor", "notifier")


@dataclass(frozen=True)
class Ports:
    client: tuple[int, ...]
    cluster: tuple[int, ...]
    monitor: tuple[int, ...]

    @classmethod
    def from_bases(cls, client: int, cluster: int, monitor: int, n: int = len(NODES)) -> Ports:
        return cls(*(tuple(base + i for i in range(n)) for base in (client, cluster, monitor)))

    @property
    def nats_url(self) -> str:
        return self.url()

    def url(self, scheme: str = "nats") -> str:
        return ",".join(f"{scheme}://127.0.0.1:{p}" for p in self.client)


def load_permissions(path: Path = HERE / "nats" / "permissions.toml") -> dict[str, dict[str, list[str]]]:
    """user -> {"publish": [...], "subscribe": [...]}"""
    users = tomllib.loads(path.read_text())["users"]
    return {name: {"publish": list(u["publish"]), "subscribe": list(u["subscribe"])} for name, u in users.items()}


def write_private(path: Path, text: str) -> None:
    """Create (or rewrite) a file only its owner can read, never briefly readable by others."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def password_file(secrets_dir: Path, user: str) -> Path:
    return secrets_dir / f"nats-{user}.password"


def ensure_passwords(secrets_dir: Path, users: list[str]) -> dict[str, str]:
    """One random password per user, generated once and kept across make up/down."""
    secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(secrets_dir, 0o700)
    passwords = {}
    for user in users:
        path = password_file(secrets_dir, user)
        if not path.exists() or not path.read_text().strip():
            write_private(path, secrets.token_urlsafe(32) + "\n")
        os.chmod(path, 0o600)
        passwords[user] = path.read_text().strip()
    return passwords


def authorization_block(permissions: dict[str, dict[str, list[str]]], passwords: dict[str, str]) -> str:
    """NATS config text: one user per service with its publish and subscribe allow lists."""
    q = json.dumps  # a JSON string is a valid quoted NATS config string
    lines = ["authorization {", "  users = ["]
    for user, perms in permissions.items():
        lines += [
            f"    {{ user: {q(user)}, password: {q(passwords[user])}, permissions: {{",
            f"        publish: {{ allow: [{', '.join(map(q, perms['publish']))}] }}",
            f"        subscribe: {{ allow: [{', '.join(map(q, perms['subscribe']))}] }}",
            "    } }",
        ]
    return "\n".join(lines + ["  ]", "}"]) + "\n"


def render_auth(var: Path, secrets_dir: Path | None = None) -> Path:
    """var/nats/auth.conf (0600) from permissions.toml and var/secrets/."""
    permissions = load_permissions()
    passwords = ensure_passwords(secrets_dir or var / "secrets", list(permissions))
    (var / "nats").mkdir(parents=True, exist_ok=True)
    path = var / "nats" / "auth.conf"
    write_private(path, "# rendered by deploy/render.py from deploy/nats/permissions.toml; secret\n"
                   + authorization_block(permissions, passwords))
    return path


@dataclass(frozen=True)
class Node:
    """Where one NATS node listens and how clients and the other nodes reach it."""

    name: str
    address: str  # what clients and routes dial (an IP or a DNS name the certificate names)
    client: int
    cluster: int
    monitor: int
    bind: str = "127.0.0.1"  # the interface it listens on: 0.0.0.0 on a real host
    monitor_bind: str = "127.0.0.1"  # /varz and friends have no password: local unless asked


@dataclass(frozen=True)
class Tls:
    """The certificate files as a node sees them: the CA, and <node>.pem / <node>-key.pem in ``directory``."""

    ca: Path
    directory: Path

    def cert(self, name: str) -> Path:
        return self.directory / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.directory / f"{name}-key.pem"


def local_nodes(ports: Ports) -> list[Node]:
    return [Node(name, "127.0.0.1", ports.client[i], ports.cluster[i], ports.monitor[i])
            for i, name in enumerate(NODES)]


def tls_block(tls: Tls, name: str, verify: bool, indent: str = "") -> str:
    """A ``tls {}`` block.  Routes verify each other (``verify``): only a node the CA signed may join."""
    q = json.dumps
    lines = ["tls {", f"  cert_file: {q(str(tls.cert(name)))}", f"  key_file: {q(str(tls.key(name)))}",
             f"  ca_file: {q(str(tls.ca))}", *(["  verify: true"] if verify else []),
             # the default 0.5 s handshake fails on a busy host and the client then retries forever
             "  timeout: 5", "}"]
    return "\n".join(indent + line for line in lines)


def node_config(node: Node, nodes: list[Node], store: Path, tls: Tls | None, authorization: str) -> str:
    template = Template((HERE / "nats" / "node.conf.tmpl").read_text())
    routes = ",\n".join(f"    nats://{n.address}:{n.cluster}" for n in nodes if n.name != node.name)
    return template.substitute(
        name=node.name,
        host=node.bind,
        port=node.client,
        monitor=f"{node.monitor_bind}:{node.monitor}",
        cluster_listen=f"{node.bind}:{node.cluster}",
        store_dir=store,
        routes=routes,
        authorization=authorization,
        tls=tls_block(tls, node.name, verify=False) if tls else "# (rendered without TLS)",
        cluster_tls=tls_block(tls, node.name, verify=True, indent="  ") if tls else "  # (routes without TLS)",
    )


def ensure_certs(directory: Path, nodes: list[Node]) -> Tls:
    """The private CA and one certificate per node for the addresses it is dialled at (deploy/certs.py)."""
    for node in nodes:
        certs.ensure_cert(directory, node.name, sorted({node.address, node.name, "localhost"}))
    return Tls(directory / "ca.pem", directory)


def render_nats(var: Path, ports: Ports, auth: bool = False, tls: bool = False) -> list[Path]:
    """Write var/nats/<node>.conf for each node and create its store dir.

    With ``auth``, each node includes var/nats/auth.conf (written by ``render_auth``).
    With ``tls``, clients and routes speak TLS with certificates from var/tls/ (made once).
    """
    nodes = local_nodes(ports)
    found = ensure_certs(var / "tls", nodes) if tls else None
    authorization = 'include "auth.conf"' if auth else "# (rendered without users: no authorization)"
    written = []
    for node in nodes:
        store = var / "nats" / node.name
        store.mkdir(parents=True, exist_ok=True)
        path = var / "nats" / f"{node.name}.conf"
        path.write_text(node_config(node, nodes, store, found, authorization))
        written.append(path)
    return written


def present_services(root: Path) -> list[str]:
    return [s for s in SERVICES if (root / "services" / s / "__main__.py").exists()]


def drop_programs(text: str, names: set[str]) -> str:
    """Remove the [program:<name>] blocks (up to the next section or comment rule)."""
    blocks = re.split(r"(?m)^(?=\[|; ---)", text)
    return "".join(b for b in blocks if not any(b.startswith(f"[program:{n}]") for n in names))


def metrics_ports(base: int) -> dict[str, str]:
    """Prometheus ports: schedulers base+0.., executors base+10.., ingest base+20, notifier base+30.

    supervisord cannot add, so a numbered program gets a prefix and appends its
    process number (0-9): base 9100 gives schedulers 9100, 9101 and executors 9110, 9111.
    """
    if base % 10:
        raise ValueError("the metrics port base must be a multiple of 10")
    return {"metrics_scheduler": str(base // 10), "metrics_executor": str(base // 10 + 1),
            "metrics_ingest": str(base + 20), "metrics_notifier": str(base + 30)}


def supervisord_text(root: Path, var: Path, venv: Path, nats_url: str, nats_ca: Path | None, secrets_dir: Path,
                     metrics_base: int = 9100, executor_id_prefix: str = "") -> str:
    """The programs with every placeholder filled: the one description of what runs (also for real hosts)."""
    return Template((HERE / "supervisord.conf").read_text()).substitute(
        root=root, var=var, venv=venv, nats_url=nats_url, nats_ca=nats_ca or "", secrets=secrets_dir,
        executor_id_prefix=executor_id_prefix, **metrics_ports(metrics_base)
    )


def render_supervisord(root: Path, var: Path, venv: Path, ports: Ports, metrics_base: int = 9100,
                       tls: bool = False) -> Path:
    """Each service's environment names its NATS user and its password *file*, never the password."""
    (var / "log").mkdir(parents=True, exist_ok=True)
    url, ca = (ports.url("tls"), var / "tls" / "ca.pem") if tls else (ports.nats_url, None)
    text = supervisord_text(root, var, venv, url, ca, var / "secrets", metrics_base)
    text = drop_programs(text, set(SERVICES) - set(present_services(root)))
    path = var / "supervisord.conf"
    path.write_text(text)
    return path


def render_ports_mk(var: Path, bases: dict[str, int]) -> Path:
    """Remember the ports of a running cluster so make status/down/demo find it."""
    path = var / "ports.mk"
    path.write_text(_ports_mk_text(bases))
    return path


def render_context(path: Path, root: Path, var: Path, ports: Ports, tls: bool = False) -> Path:
    """Record this cluster for the ``valor`` CLI: its URL, the ``cli`` user's password *file*, the CA file."""
    url, ca = (ports.url("tls"), var / "tls" / "ca.pem") if tls else (ports.nats_url, None)
    return context.write(path, url, "cli", password_file(var / "secrets", "cli"), root, ca=ca)


def supervisord_running(var: Path) -> bool:
    try:
        pid = int((var / "supervisord.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=HERE.parent)
    p.add_argument("--var", type=Path, default=None)
    p.add_argument("--venv", type=Path, default=None)
    p.add_argument("--nats-port-base", type=int, default=4222)
    p.add_argument("--cluster-port-base", type=int, default=6222)
    p.add_argument("--monitor-port-base", type=int, default=8222)
    p.add_argument("--metrics-port-base", type=int, default=9100)
    p.add_argument("--context", type=Path, default=None,
                   help="where the valor CLI finds this cluster (default: $VALOR_CONTEXT or ~/.config/valor/context.json)")
    p.add_argument("--tls", action="store_true",
                   help="clients and routes speak TLS; a private CA and the nodes' certificates go to var/tls/")
    p.add_argument("--target", choices=["local", "systemd", "compose"], default="local",
                   help="local: var/ for make up; systemd / compose: files for real hosts (deploy/hosts.py)")
    a, rest = p.parse_known_args(argv)
    if a.target != "local":
        import hosts  # only real hosts need it

        return hosts.main(a, rest)
    if rest:
        p.error(f"unrecognized arguments: {' '.join(rest)}")
    root = a.root.resolve()
    var = (a.var or root / "var").resolve()
    venv = (a.venv or root / ".venv").absolute()  # keep the venv's symlinked python as is
    bases = {
        "NATS_PORT_BASE": a.nats_port_base,
        "NATS_CLUSTER_PORT_BASE": a.cluster_port_base,
        "NATS_MONITOR_PORT_BASE": a.monitor_port_base,
        "METRICS_PORT_BASE": a.metrics_port_base,
        "NATS_TLS": int(a.tls),  # make status/down/demo speak TLS to a cluster started with it
    }
    old = var / "ports.mk"
    if supervisord_running(var) and old.exists() and old.read_text() != _ports_mk_text(bases):
        print(
            f"render: the cluster is running with other ports or TLS setting ({old}); run make down first", file=sys.stderr
        )
        return 2
    var.mkdir(parents=True, exist_ok=True)
    ports = Ports.from_bases(a.nats_port_base, a.cluster_port_base, a.monitor_port_base)
    render_auth(var)
    try:
        render_nats(var, ports, auth=True, tls=a.tls)
    except certs.CertError as exc:
        print(f"render: {exc}", file=sys.stderr)
        return 2
    render_supervisord(root, var, venv, ports, a.metrics_port_base, tls=a.tls)
    render_ports_mk(var, bases)
    recorded = render_context(a.context or context.context_path(), root, var, ports, tls=a.tls)
    services = present_services(root)
    print(
        f"rendered {var}/nats/n1..n3.conf and {var}/supervisord.conf "
        f"(services: {', '.join(services) or 'none yet'}); the valor CLI finds it through {recorded}"
    )
    return 0


def _ports_mk_text(bases: dict[str, int]) -> str:
    return "# written by deploy/render.py at make up; removed by make down\n" + "".join(
        f"{k} := {v}\n" for k, v in bases.items()
    )


if __name__ == "__main__":
    sys.exit(main())
