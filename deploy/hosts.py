"""Valor on real hosts: systemd units per host, or a docker compose file, from the same data as `make up`.

    python deploy/render.py --target systemd --out DIR \\
        --hosts h1=10.0.0.1,h2=10.0.0.2,h3=10.0.0.3 [--executor-hosts h4=10.0.0.4] [--prefix /opt/valor]
    python deploy/render.py --target compose --out DIR

The NATS nodes come from deploy/nats/node.conf.tmpl and the users from
deploy/nats/permissions.toml, as for make up; every service's command and
environment come from the [program:*] blocks of deploy/supervisord.conf, so a
service added there is deployed everywhere.  Both targets speak TLS between
clients and nodes and between the nodes' routes, which verify each other's
certificate (deploy/certs.py), and keep durability as shipped: file storage,
sync_interval always, R3.

systemd: DIR/<host>/ mirrors what goes on that host (copy it to / there):
etc/valor/valor.env (the cluster's URLs, the CA, this host's name: nothing
secret), etc/valor/units (the units to enable), etc/valor/secrets/ (only the
passwords of the users whose services run there), and on a node host
etc/valor/nats.conf, auth.conf and tls/<node>*.pem.  Passwords reach a service
through systemd's LoadCredential=, never through the unit's text.
DIR/ca/ (the CA's key) and DIR/secrets/ (every password) stay on the
operator's machine; rendering again keeps both.

compose: DIR/compose.yaml runs the three nodes and the services on one docker
host, each node in its own container with its own store volume.
"""

from __future__ import annotations

import argparse
import configparser
import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import certs
import render

# Where things live on a host (systemd) or in a container (compose).
PREFIX = Path("/opt/valor")  # the checkout and its .venv, as `make venv` made them
ETC = Path("/etc/valor")
STATE = Path("/var/lib/valor")  # the node's store: StateDirectory=valor
TLS_DIR = Path("tls")  # relative: nats-server runs in ETC and reads its files from there
HOST_ENV = ("VALOR_NATS_URL", "VALOR_NATS_CA", "VALOR_REPLICAS")  # per host, not per service
ADMIN = "admin"  # creates the streams and buckets; the services may not


@dataclass(frozen=True)
class Program:
    """One [program:*] of deploy/supervisord.conf, as a host runs it."""

    name: str
    command: str  # may hold %(process_num)s
    env: dict[str, str]
    numprocs: int

    @property
    def user(self) -> str:
        return self.env["VALOR_NATS_USER"]

    def service_env(self) -> dict[str, str]:
        """The program's own environment: the host gives the cluster, systemd or compose the password file."""
        return {k: v for k, v in self.env.items() if k not in HOST_ENV and k != "VALOR_NATS_PASSWORD_FILE"}


def parse_environment(value: str) -> dict[str, str]:
    """supervisord's ``KEY="value",KEY2="value"`` (values may hold commas)."""
    return dict(re.findall(r'(\w+)="([^"]*)"', value))


def programs(text: str) -> list[Program]:
    """The services of a rendered supervisord.conf, NATS nodes left out (hosts run one node each)."""
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";",))
    parser.read_string(text)
    found = []
    for section in parser.sections():
        if section.startswith("program:") and not section.startswith("program:nats-"):
            p = parser[section]
            found.append(Program(section.split(":", 1)[1], p["command"], parse_environment(p.get("environment", "")),
                                 int(p.get("numprocs", "1"))))
    return found


def nats_binary(text: str) -> str:
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";",))
    parser.read_string(text)
    return parser["program:nats-1"]["command"].split()[0]


def parse_hosts(spec: str) -> list[tuple[str, str]]:
    """``h1=10.0.0.1,h2=h2.example.net`` -> [("h1", "10.0.0.1"), ("h2", "h2.example.net")]; ``h1`` alone dials h1."""
    hosts = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        name, _, address = item.partition("=")
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            raise ValueError(f"host name {name!r}: letters, digits, '-' or '_' (it names the node and the executor)")
        hosts.append((name, address.strip() or name))
    return hosts


def host_nodes(hosts: list[tuple[str, str]], ports: render.Ports, bind: str | None,
               monitor_bind: str | None) -> list[render.Node]:
    """One node per host, named after it, each on the same ports (the first of each base).

    A bind of None is the node's own address: hosts that share a machine (loopback
    addresses in a test, network namespaces) then do not take each other's ports.
    """
    return [render.Node(name, address, ports.client[0], ports.cluster[0], ports.monitor[0], bind or address,
                        monitor_bind or address) for name, address in hosts]


def client_url(nodes: list[render.Node]) -> str:
    return ",".join(f"tls://{n.address}:{n.client}" for n in nodes)


def write_node(etc: Path, node: render.Node, nodes: list[render.Node], ca_dir: Path, auth_text: str,
               store: Path) -> None:
    """etc/nats.conf, auth.conf (0600) and tls/ for one node, as it reads them from its working directory."""
    (etc / TLS_DIR).mkdir(parents=True, exist_ok=True)
    for src in (ca_dir / "ca.pem", ca_dir / f"{node.name}.pem", ca_dir / f"{node.name}-key.pem"):
        shutil.copyfile(src, etc / TLS_DIR / src.name)
    (etc / TLS_DIR / f"{node.name}-key.pem").chmod(0o600)
    tls = render.Tls(TLS_DIR / "ca.pem", TLS_DIR)
    (etc / "nats.conf").write_text(render.node_config(node, nodes, store, tls, 'include "auth.conf"'))
    render.write_private(etc / "auth.conf", auth_text)


def auth_text(secrets_dir: Path) -> str:
    permissions = render.load_permissions()
    passwords = render.ensure_passwords(secrets_dir, list(permissions))
    return ("# rendered by deploy/render.py from deploy/nats/permissions.toml; secret\n"
            + render.authorization_block(permissions, passwords))


# --- systemd ----------------------------------------------------------------------------------------------

UNIT_HEAD = """\
# Rendered by deploy/render.py --target systemd from deploy/supervisord.conf [program:{program}]; do not edit.
[Unit]
Description=Valor {description}
Documentation=file:{prefix}/docs/operations.md
After=network-online.target {after}
Wants=network-online.target

[Service]
"""

SERVICE_BODY = """\
Type=simple
User=valor
Group=valor
WorkingDirectory={prefix}
EnvironmentFile={etc}/valor.env
{environment}
# The password file is handed over by systemd (readable by this service only), never written here.
LoadCredential=nats-password:{etc}/secrets/nats-{user}.password
Environment=VALOR_NATS_PASSWORD_FILE=%d/nats-password
ExecStart={command}
Restart=always
RestartSec=2
TimeoutStopSec=15
# Task processes run in sessions of their own: the cgroup still holds them, so a stop ends them too.
KillMode=control-group
NoNewPrivileges=yes
ProtectSystem=full
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
"""

NATS_UNIT = """\
# Rendered by deploy/render.py --target systemd from deploy/supervisord.conf [program:nats-*]; do not edit.
[Unit]
Description=Valor NATS node (JetStream, TLS)
Documentation=file:{prefix}/docs/operations.md
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=valor
Group=valor
# nats.conf names auth.conf and tls/ relative to here; the store is {state}/nats/<node>
WorkingDirectory={etc}
StateDirectory=valor
StateDirectoryMode=0700
ExecStart={nats} -c {etc}/nats.conf
ExecReload=/bin/kill -HUP $MAINPID
Restart=always
RestartSec=2
TimeoutStopSec=30
LimitNOFILE=65536
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths={state}
ProtectHome=yes
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
"""

STREAMS_UNIT = """\
# Rendered by deploy/render.py --target systemd; do not edit.
# Creates the streams and buckets at R3 as the `admin` user (the services may not), then exits.
[Unit]
Description=Valor streams and buckets (R3)
Documentation=file:{prefix}/docs/operations.md
After=network-online.target valor-nats.service
Wants=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
User=valor
Group=valor
WorkingDirectory={prefix}
EnvironmentFile={etc}/valor.env
Environment=VALOR_NATS_USER={admin}
LoadCredential=nats-password:{etc}/secrets/nats-{admin}.password
Environment=VALOR_NATS_PASSWORD_FILE=%d/nats-password
ExecStart={python} {prefix}/deploy/health.py streams --replicas 3 --timeout 300
NoNewPrivileges=yes

[Install]
WantedBy=multi-user.target
"""


def unit_name(program: Program) -> str:
    return f"valor-{program.name}@.service" if program.numprocs > 1 else f"valor-{program.name}.service"


def unit_text(program: Program, prefix: Path, etc: Path) -> str:
    env = program.service_env()
    environment = "\n".join(f"Environment={json.dumps(f'{k}={v}'.replace('%(process_num)s', '%i'))}"
                            for k, v in env.items() if k != "VALOR_NATS_USER")
    head = UNIT_HEAD.format(program=program.name, prefix=prefix, after="valor-streams.service valor-nats.service",
                            description=f"{program.name}{' %i' if program.numprocs > 1 else ''}")
    return head + SERVICE_BODY.format(
        prefix=prefix, etc=etc, user=program.user,
        environment=f"Environment=VALOR_NATS_USER={program.user}\n{environment}".rstrip(),
        command=program.command.replace("%(process_num)s", "%i"))


def placement(programs_: list[Program], node_hosts: list[str], executor_hosts: list[str]) -> dict[str, list[str]]:
    """Which units each host enables.

    Every node host runs its NATS node and the first also creates the streams;
    a program with several processes (the scheduler and its hot standby) puts
    them on different node hosts; executors run on every host; a program of one
    process (ingest: one Telegram session) runs on the first host.
    """
    units: dict[str, list[str]] = {h: ["valor-nats.service"] for h in node_hosts}
    units.update({h: [] for h in executor_hosts})
    units[node_hosts[0]].append("valor-streams.service")
    for p in programs_:
        if p.name == "executor":
            for h in units:
                units[h].append("valor-executor@0.service")
        elif p.numprocs > 1:
            for i in range(min(p.numprocs, len(node_hosts))):
                units[node_hosts[i]].append(f"valor-{p.name}@{i}.service")
        else:
            units[node_hosts[0]].append(f"valor-{p.name}.service")
    return units


def program_of(unit: str) -> str:
    """``valor-executor@0.service`` -> ``executor``"""
    return re.sub(r"^valor-|(@\d*)?\.service$", "", unit)


def users_of(units: list[str], programs_: list[Program]) -> set[str]:
    """The NATS users whose passwords a host running ``units`` needs."""
    user = {p.name: p.user for p in programs_}
    return {user[n] for n in map(program_of, units) if n in user} | ({ADMIN} if "valor-streams.service" in units else set())


def present_programs(text: str, root: Path) -> list[Program]:
    """The programs of a rendered supervisord.conf that this checkout has (as make up keeps them)."""
    return [p for p in programs(text) if p.name in render.present_services(root) or p.name not in render.SERVICES]


def render_systemd(out: Path, root: Path, node_hosts: list[tuple[str, str]], executor_hosts: list[tuple[str, str]],
                   ports: render.Ports, metrics_base: int, prefix: Path = PREFIX, etc: Path = ETC,
                   monitor_bind: str | None = "127.0.0.1", bind: str | None = "0.0.0.0",
                   state: Path = STATE) -> dict[str, list[str]]:
    if len(node_hosts) != 3:
        raise ValueError(f"--hosts names the three NATS hosts (R3 needs three), got {len(node_hosts)}")
    names = [h for h, _ in node_hosts + executor_hosts]
    if len(set(names)) != len(names):
        raise ValueError(f"host names must differ: {', '.join(names)}")
    nodes = host_nodes(node_hosts, ports, bind, monitor_bind)
    ca_dir = out / "ca"
    render.ensure_certs(ca_dir, nodes)
    auth = auth_text(out / "secrets")
    venv = prefix / ".venv"
    text = render.supervisord_text(prefix, prefix / "var", venv, client_url(nodes), etc / TLS_DIR / "ca.pem",
                                   etc / "secrets", metrics_base, executor_id_prefix="${VALOR_HOST}-")
    progs = present_programs(text, root)
    units = {unit_name(p): unit_text(p, prefix, etc) for p in progs}
    units["valor-nats.service"] = NATS_UNIT.format(prefix=prefix, etc=etc, state=state, nats=nats_binary(text))
    units["valor-streams.service"] = STREAMS_UNIT.format(prefix=prefix, etc=etc, admin=ADMIN,
                                                         python=venv / "bin" / "python")
    placed = placement(progs, [h for h, _ in node_hosts], [h for h, _ in executor_hosts])
    for host, enabled in placed.items():
        tree = out / host
        host_etc = tree / etc.relative_to("/")
        if host_etc.exists():
            shutil.rmtree(host_etc)  # a host that no longer runs a service loses its password
        host_etc.mkdir(parents=True)
        (host_etc / TLS_DIR).mkdir()
        shutil.copyfile(ca_dir / "ca.pem", host_etc / TLS_DIR / "ca.pem")
        node = next((n for n in nodes if n.name == host), None)
        if node is not None:
            write_node(host_etc, node, nodes, ca_dir, auth, state / "nats" / node.name)
        (host_etc / "secrets").mkdir(mode=0o700)
        for user in sorted(users_of(enabled, progs)):
            src = render.password_file(out / "secrets", user)
            render.write_private(host_etc / "secrets" / src.name, src.read_text())
        (host_etc / "valor.env").write_text(
            f"# Rendered by deploy/render.py --target systemd for host {host}; nothing secret.\n"
            f"VALOR_HOST={host}\nVALOR_NATS_URL={client_url(nodes)}\n"
            f"VALOR_NATS_CA={etc / TLS_DIR / 'ca.pem'}\nVALOR_REPLICAS=3\n")
        (host_etc / "units").write_text("\n".join(enabled) + "\n")
        unit_dir = tree / "etc" / "systemd" / "system"
        if unit_dir.exists():
            shutil.rmtree(unit_dir)
        unit_dir.mkdir(parents=True)
        for unit in {re.sub(r"@\d+\.service$", "@.service", u) for u in enabled}:
            (unit_dir / unit).write_text(units[unit])
    return placed


# --- docker compose ---------------------------------------------------------------------------------------

def yaml(value, indent: int = 0) -> str:
    """A small YAML writer: mappings, lists and JSON-quoted scalars (valid YAML), enough for a compose file."""
    pad = "  " * indent
    if isinstance(value, dict):
        lines = []
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:\n{yaml(v, indent + 1)}")
            else:
                lines.append(f"{pad}{k}: {_scalar(v)}")
        return "\n".join(lines)
    if isinstance(value, list):
        return "\n".join(f"{pad}- {_scalar(v)}" for v in value)
    return pad + _scalar(value)


def _scalar(v) -> str:
    if v == {} or v is None:
        return "{}"
    if v == []:
        return "[]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return json.dumps(str(v))


def render_compose(out: Path, root: Path, ports: render.Ports, metrics_base: int) -> Path:
    """DIR/compose.yaml, DIR/nodes/<node>/ (config, auth, certificates), DIR/secrets/ and DIR/ca/."""
    path = out / "compose.yaml"
    path.write_text("# Rendered by deploy/render.py --target compose from deploy/supervisord.conf and\n"
                    "# deploy/nats/; do not edit.  Secrets are files next to it (secrets/, nodes/*/auth.conf).\n"
                    + yaml(compose_data(out, root, ports, metrics_base)) + "\n")
    return path


def compose_data(out: Path, root: Path, ports: render.Ports, metrics_base: int) -> dict:
    """The compose file as data; the nodes' files and the secrets it names are written under ``out``."""
    names = list(render.NODES)
    nodes = host_nodes([(n, n) for n in names], ports, "0.0.0.0", "0.0.0.0")
    ca_dir = out / "ca"
    render.ensure_certs(ca_dir, nodes)
    auth = auth_text(out / "secrets")
    for node in nodes:
        write_node(out / "nodes" / node.name, node, nodes, ca_dir, auth, STATE / "nats")
    shutil.copyfile(ca_dir / "ca.pem", out / "ca.pem")
    venv = PREFIX / ".venv"
    ca = Path("/run/secrets/nats-ca")
    text = render.supervisord_text(PREFIX, PREFIX / "var", venv, client_url(nodes), ca, Path("/run/secrets"),
                                   metrics_base)
    progs = present_programs(text, root)
    image = {"image": "valor:local", "build": {"context": str(root), "dockerfile": "deploy/Dockerfile"}}
    services: dict[str, dict] = {}
    for i, node in enumerate(nodes):
        services[f"nats-{i + 1}"] = {
            **image, "hostname": node.name, "working_dir": str(ETC),
            "command": [nats_binary(text), "-c", str(ETC / "nats.conf")],
            "volumes": [f"./nodes/{node.name}:{ETC}:ro", f"{node.name}-store:{STATE}"],
            "ports": [f"127.0.0.1:{ports.client[i]}:{node.client}"],
            "restart": "unless-stopped", "stop_grace_period": "30s",
        }
    common_env = {"VALOR_NATS_URL": client_url(nodes), "VALOR_NATS_CA": str(ca), "VALOR_REPLICAS": "3"}
    after_nodes = {f"nats-{i + 1}": {"condition": "service_started"} for i in range(len(nodes))}
    services["streams"] = {
        **image, "command": [str(venv / "bin" / "python"), str(PREFIX / "deploy" / "health.py"), "streams",
                             "--replicas", "3", "--timeout", "300"],
        "environment": {**common_env, "VALOR_NATS_USER": ADMIN, "VALOR_NATS_PASSWORD_FILE": f"/run/secrets/nats-{ADMIN}"},
        "secrets": ["nats-ca", f"nats-{ADMIN}"], "depends_on": after_nodes, "restart": "on-failure",
    }
    users = {ADMIN}
    for p in progs:
        for n in range(p.numprocs):
            name = f"{p.name}-{n}" if p.numprocs > 1 else p.name
            users.add(p.user)
            env = {k: v.replace("%(process_num)s", str(n)) for k, v in p.service_env().items()}
            services[name] = {
                **image, "command": p.command.replace("%(process_num)s", str(n)).split(),
                "working_dir": str(PREFIX),
                "environment": {**common_env, **env, "VALOR_NATS_PASSWORD_FILE": f"/run/secrets/nats-{p.user}"},
                "secrets": ["nats-ca", f"nats-{p.user}"],
                "volumes": [f"valor-var:{PREFIX / 'var'}"],
                "depends_on": {"streams": {"condition": "service_completed_successfully"}},
                "restart": "unless-stopped", "stop_grace_period": "15s",
            }
    return {  # no top-level name: docker-compose 1.x refuses it; `docker compose -p valor` names the project
        "services": services,
        "secrets": {"nats-ca": {"file": "./ca.pem"},
                    **{f"nats-{u}": {"file": f"./secrets/nats-{u}.password"} for u in sorted(users)}},
        "volumes": {**{f"{n.name}-store": {} for n in nodes}, "valor-var": {}},
    }


def main(a: argparse.Namespace, rest: list[str]) -> int:
    p = argparse.ArgumentParser(prog="render.py --target " + a.target)
    p.add_argument("--out", type=Path, required=True, help="where the files for the hosts go")
    p.add_argument("--hosts", default="", help="systemd: the three NATS hosts, NAME=ADDRESS,NAME=ADDRESS,...")
    p.add_argument("--executor-hosts", default="", help="systemd: more hosts that run executors only")
    p.add_argument("--prefix", type=Path, default=PREFIX, help="the checkout (with .venv) on every host")
    p.add_argument("--bind", default="0.0.0.0",
                   help="systemd: the interface nodes listen on; `address`: each node's own address")
    p.add_argument("--monitor-bind", default="127.0.0.1",
                   help="systemd: the interface of the monitoring port (no password); `address`: its own")
    b = p.parse_args(rest)
    ports = render.Ports.from_bases(a.nats_port_base, a.cluster_port_base, a.monitor_port_base)
    root = a.root.resolve()
    b.out.mkdir(parents=True, exist_ok=True)
    try:
        if a.target == "compose":
            print(f"rendered {render_compose(b.out, root, ports, a.metrics_port_base)}")
            return 0
        placed = render_systemd(b.out, root, parse_hosts(b.hosts), parse_hosts(b.executor_hosts), ports,
                                a.metrics_port_base, b.prefix,
                                monitor_bind=None if b.monitor_bind == "address" else b.monitor_bind,
                                bind=None if b.bind == "address" else b.bind)
    except (ValueError, certs.CertError) as exc:
        print(f"render: {exc}", file=sys.stderr)
        return 2
    for host, units in placed.items():
        print(f"{b.out / host}/: {' '.join(units)}")
    print(f"keep {b.out / 'ca'} (the CA's key) and {b.out / 'secrets'} off the hosts")
    return 0
