"""Bring-up, health table and tear-down checks for the local cluster (used by the Makefile).

    health.py wait   --var V --venv E --monitor-ports 8222,8223,8224 [--timeout S]
    health.py table  --var V --venv E --monitor-ports ...
    health.py down   --var V --venv E [--timeout S]
    health.py streams [--replicas 3] [--timeout S]   (real hosts: as VALOR_NATS_USER, TLS from the env)

``wait`` polls each node's /healthz until JetStream has a meta leader, creates
the streams at R3 (valor.bus.ensure_streams), starts the services and waits
until supervisord reports every program RUNNING.  ``down`` shuts supervisord
down, waits for it, stops the task process groups recorded under var/run/tasks/
(services/executor/groups.py), and makes sure no process of this checkout survives.
Only ``wait`` needs the venv (nats-py); the rest is standard library.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def http_json(port: int, path: str, timeout: float = 1.0) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"{}")
        except ValueError:
            return e.code, {}
    except (OSError, ValueError) as e:
        return 0, {"error": str(e)}


def node_health(port: int) -> str:
    code, body = http_json(port, "/healthz")
    if code == 200:
        return "ok"
    return body.get("error") or body.get("status") or f"http {code}"


def wait_nodes(ports: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        states = {p: node_health(p) for p in ports}
        if all(s == "ok" for s in states.values()):
            print(f"nats: {len(ports)} nodes healthy, JetStream ready")
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"nats: not healthy after {timeout:.0f}s: {states}")
        time.sleep(0.5)


def admin_credentials(var: Path) -> dict[str, str]:
    """Streams are created as the NATS `admin` user (deploy/nats/permissions.toml), when users exist."""
    path = var / "secrets" / "nats-admin.password"
    return {"user": "admin", "password": path.read_text().strip()} if path.is_file() else {}


def ensure_streams(url: str, replicas: int, timeout: float, var: Path | None = None) -> None:
    import asyncio

    from valor import bus

    creds = admin_credentials(var) if var is not None else {}

    async def run() -> None:
        nc = await bus.connect(url, name="make-up", **creds)
        try:
            await bus.ensure_streams(nc.jetstream(timeout=10), replicas)
        finally:
            await nc.close()

    deadline = time.monotonic() + timeout
    while True:
        try:
            asyncio.run(run())
            print(f"nats: streams and buckets present at R{replicas}")
            return
        except Exception as e:  # a leader election in progress; try again
            if time.monotonic() > deadline:
                raise SystemExit(f"nats: could not create streams: {e!r}") from e
            time.sleep(1)


def wait_executors(url: str, timeout: float, var: Path) -> None:
    """Services are RUNNING before they are ready: wait until executors announce their slots."""
    import asyncio

    from valor import bus

    async def count() -> int:
        nc = await bus.connect(url, name="make-up", **admin_credentials(var))
        try:
            kv = await nc.jetstream(timeout=5).key_value("valor_executors")
            return len(await kv.keys())
        except Exception:
            return 0
        finally:
            await nc.close()

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (n := asyncio.run(count())) > 0:
            print(f"executors: {n} announced")
            return
        time.sleep(1)
    print("executors: none announced yet (see var/log/executor-*.log)")


def supervisorctl(a: argparse.Namespace, *args: str) -> subprocess.CompletedProcess:
    cmd = [str(a.venv / "bin" / "supervisorctl"), "-c", str(a.var / "supervisord.conf"), *args]
    return subprocess.run(cmd, capture_output=True, text=True)


def program_states(a: argparse.Namespace) -> dict[str, str]:
    out = supervisorctl(a, "status").stdout
    return {f[0]: f[1] for f in (line.split() for line in out.splitlines()) if len(f) >= 2}


def wait_programs(a: argparse.Namespace, timeout: float) -> None:
    supervisorctl(a, "update")  # programs added since the last make up
    supervisorctl(a, "start", "all")
    deadline = time.monotonic() + timeout
    while True:
        states = program_states(a)
        bad = {n: s for n, s in states.items() if s != "RUNNING"}
        if states and not bad:
            print(f"supervisord: {len(states)} programs RUNNING")
            return
        if time.monotonic() > deadline or any(s in ("FATAL", "EXITED") for s in bad.values()):
            logs = ", ".join(f"{a.var}/log/{n.split(':')[-1]}.log" for n in bad)
            raise SystemExit(f"supervisord: not running: {bad}; see {logs}")
        time.sleep(0.5)


def table(a: argparse.Namespace) -> None:
    print(supervisorctl(a, "status").stdout.rstrip() or "supervisord: not running")
    print()
    print(f"{'node':6} {'monitor':8} {'healthz':10} jetstream")
    for port in a.monitor_ports:
        code, varz = http_json(port, "/varz")
        name = varz.get("server_name", "?") if code == 200 else "?"
        code, jsz = http_json(port, "/jsz")
        js = "-"
        if code == 200:
            leader = (jsz.get("meta_cluster") or {}).get("leader", "none")
            js = f"meta leader {leader}, {jsz.get('streams', 0)} streams, {jsz.get('messages', 0)} messages"
        print(f"{name:6} {port:<8} {node_health(port):10} {js}")


# --- tear-down -------------------------------------------------------------------


def our_processes(a: argparse.Namespace) -> dict[int, str]:
    """Processes started from this checkout: its supervisord, nats nodes and services.

    A service is recognised by its command line *and* by the supervisord socket
    in its environment, so tests that run ``python -m services.x`` themselves
    from the same venv are never touched.
    """
    server_url = f"SUPERVISOR_SERVER_URL=unix://{a.var}/supervisor.sock".encode()
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        pid_text, _, args = line.strip().partition(" ")
        pid = int(pid_text)
        if pid == os.getpid():
            continue
        ours = f"-c {a.var}/supervisord.conf" in args or f"-c {a.var}/nats/" in args
        if not ours and "-m services." in args and args.startswith(str(a.venv)):
            ours = server_url in environ(pid).split(b"\0")
        if ours:
            found[pid] = args.strip()
    return found


def environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped does not count)."""
    stat = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout
    return bool(stat.strip()) and not stat.strip().startswith("Z")


def supervisord_pid(var: Path) -> int | None:
    try:
        pid = int((var / "supervisord.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def wait_gone(a: argparse.Namespace, timeout: float) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    while (left := our_processes(a)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def stop_task_groups(directory: Path) -> None:
    """Programs the executors started (Claude Code, shell tasks) run in sessions of their own:
    supervisord's stop does not reach them, and an executor killed before it could stop its
    own left them running.  Each is recorded under var/run/tasks/ until it ends."""
    if not directory.is_dir():
        return
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:  # also without the venv
        sys.path.insert(0, root)
    from services.executor import groups

    for record, pids in groups.stop_where(directory, lambda record: True):
        if pids:
            print(f"down: stopped task group {record.pgid} of promise #{record.promise} "
                  f"(attempt {record.attempt}, {record.workspace}): {len(pids)} processes")


def down(a: argparse.Namespace) -> None:
    pid = supervisord_pid(a.var)
    if pid:
        print(f"supervisord {pid}: shutting down")
        if supervisorctl(a, "shutdown").returncode != 0:
            os.kill(pid, signal.SIGTERM)  # supervisord stops its children on TERM too
        deadline = time.monotonic() + a.timeout
        while alive(pid) and time.monotonic() < deadline:  # it stops its children first
            time.sleep(0.2)
    left = wait_gone(a, 2)
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        if not left:
            break
        for p, args in left.items():
            print(f"down: {sig.name} leftover {p} {args}")
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        left = wait_gone(a, grace)
    stop_task_groups(a.var / "run" / "tasks")
    (a.var / "ports.mk").unlink(missing_ok=True)
    if left:
        raise SystemExit(f"down: still running: {left}")
    print("down: nothing left running")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["wait", "table", "down", "streams"])
    p.add_argument("--var", type=lambda s: Path(s).absolute(), default=Path("var").absolute())
    p.add_argument("--venv", type=lambda s: Path(s).absolute(), default=Path(".venv").absolute())
    p.add_argument(
        "--monitor-ports", type=lambda s: [int(x) for x in s.split(",")], default=[8222, 8223, 8224]
    )
    p.add_argument("--nats-url", default=os.environ.get("VALOR_NATS_URL", ""))
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--timeout", type=float, default=60)
    a = p.parse_args(argv)
    if a.action == "wait":
        wait_nodes(a.monitor_ports, a.timeout)
        ensure_streams(a.nats_url, a.replicas, a.timeout, a.var)
        wait_programs(a, a.timeout)
        if "executor" in " ".join(program_states(a)):
            wait_executors(a.nats_url, min(a.timeout, 30), a.var)
    elif a.action == "streams":  # real hosts (deploy/hosts.py): the user, password and CA come from the env
        ensure_streams(a.nats_url or None, a.replicas, a.timeout)
    elif a.action == "table":
        table(a)
    else:
        down(a)


if __name__ == "__main__":
    main()
    sys.exit(0)
