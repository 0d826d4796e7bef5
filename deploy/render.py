"""Render the local cluster's configs into var/: NATS nodes, supervisord, ports.

    python deploy/render.py [--root DIR] [--var DIR] [--venv DIR]
                            [--nats-port-base 4222] [--cluster-port-base 6222]
                            [--monitor-port-base 8222]

Node i (1..3) listens on base+i-1 for each kind of port.  A service program
is kept in supervisord.conf only when services/<name>/__main__.py exists.
Standard library only: `make up` runs it before anything else exists.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from string import Template

HERE = Path(__file__).resolve().parent
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
        return ",".join(f"nats://127.0.0.1:{p}" for p in self.client)


def render_nats(var: Path, ports: Ports) -> list[Path]:
    """Write var/nats/<node>.conf for each node and create its store dir."""
    template = Template((HERE / "nats" / "node.conf.tmpl").read_text())
    written = []
    for i, name in enumerate(NODES):
        store = var / "nats" / name
        store.mkdir(parents=True, exist_ok=True)
        routes = ",\n".join(f"    nats://127.0.0.1:{p}" for j, p in enumerate(ports.cluster) if j != i)
        text = template.substitute(
            name=name,
            port=ports.client[i],
            monitor_port=ports.monitor[i],
            cluster_port=ports.cluster[i],
            store_dir=store,
            routes=routes,
        )
        path = var / "nats" / f"{name}.conf"
        path.write_text(text)
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


def render_supervisord(root: Path, var: Path, venv: Path, ports: Ports, metrics_base: int = 9100) -> Path:
    (var / "log").mkdir(parents=True, exist_ok=True)
    text = Template((HERE / "supervisord.conf").read_text()).substitute(
        root=root, var=var, venv=venv, nats_url=ports.nats_url, **metrics_ports(metrics_base)
    )
    text = drop_programs(text, set(SERVICES) - set(present_services(root)))
    path = var / "supervisord.conf"
    path.write_text(text)
    return path


def render_ports_mk(var: Path, bases: dict[str, int]) -> Path:
    """Remember the ports of a running cluster so make status/down/demo find it."""
    path = var / "ports.mk"
    path.write_text(_ports_mk_text(bases))
    return path


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
    a = p.parse_args(argv)
    root = a.root.resolve()
    var = (a.var or root / "var").resolve()
    venv = (a.venv or root / ".venv").absolute()  # keep the venv's symlinked python as is
    bases = {
        "NATS_PORT_BASE": a.nats_port_base,
        "NATS_CLUSTER_PORT_BASE": a.cluster_port_base,
        "NATS_MONITOR_PORT_BASE": a.monitor_port_base,
        "METRICS_PORT_BASE": a.metrics_port_base,
    }
    old = var / "ports.mk"
    if supervisord_running(var) and old.exists() and old.read_text() != _ports_mk_text(bases):
        print(
            f"render: the cluster is running with other ports ({old}); run make down first", file=sys.stderr
        )
        return 2
    var.mkdir(parents=True, exist_ok=True)
    ports = Ports.from_bases(a.nats_port_base, a.cluster_port_base, a.monitor_port_base)
    render_nats(var, ports)
    render_supervisord(root, var, venv, ports, a.metrics_port_base)
    render_ports_mk(var, bases)
    services = present_services(root)
    print(
        f"rendered {var}/nats/n1..n3.conf and {var}/supervisord.conf "
        f"(services: {', '.join(services) or 'none yet'})"
    )
    return 0


def _ports_mk_text(bases: dict[str, int]) -> str:
    return "# written by deploy/render.py at make up; removed by make down\n" + "".join(
        f"{k} := {v}\n" for k, v in bases.items()
    )


if __name__ == "__main__":
    sys.exit(main())
