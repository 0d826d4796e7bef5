"""The headline figures: the ``make up`` stack as shipped, driven the way a user drives it.

The stack is rendered by ``deploy/render.py`` into a temporary var dir (its own
NATS users and passwords, random free ports, a context file of its own, so the
developer's ``var/``, ``~/.config/valor/context.json`` and a running ``make up``
are never touched), run by supervisord from that rendered config and brought up
by ``deploy/health.py wait``, exactly as ``make up`` does: three R3 nodes with
file storage and ``sync_interval: always``, two schedulers (active and standby),
two executors with ``respond=2,code=2,default=32`` slots, ingest and notifier on
the console transport, and the analytics program.  ``valor web`` is not started
by ``make up``; it runs beside, as a user with the dashboard open, so its cost
as a reader of the log is visible too.

At light load first: a no-op submitted one at a time until its ``started`` is
stored, and ``/help`` on the console until its 👀 and its reply (the shipped
pacing).  Then each shape's promises are driven two ways: through the public
CLI contract (``valor plan -`` then ``valor wait`` as subprocesses,
``pipelines`` of them at once) and through the client API (``ValorClient.submit`` then ``.wait``).  Per
shape: promises per second through the driver (first submission to the last
wait returning), the engine alone (first ``created`` to the last ``succeeded``
on the log), and CPU per promise of every process, read from /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from schemas.commands import NewPromise as T
from schemas.events import Created, Succeeded
from valor import bus
from valor.client import ValorClient, scheduler_leader
from valor.config import Telegram
from valor.natsserver import free_ports

from .chat import console_replies
from .measures import chain_plans, cpu_seconds, fanout_plans, noop_plans, time_to_start

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent
# After the last promise ended, readers may still be behind (analytics syncs every 15 s):
# their CPU until then belongs to the load too.
TAIL_SECONDS = 16.0
SHAPES = ("independent", "chain3", "fanout10")


def free_bases() -> dict[str, int]:
    """Port bases where every port the rendered stack listens on is free (render.py adds 0..2,
    metrics adds 0, 1, 10, 11, 20, 30): from the range of ``free_ports``, never the
    4222/6222/8222/9100 of a running ``make up``."""
    return {"nats": free_ports(3), "cluster": free_ports(3), "monitor": free_ports(3),
            "metrics": free_ports(31, align=10)}


@dataclass
class ShippedStack:
    """``make up`` in a temporary directory; ``down()`` is ``make down`` there."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="valor-shipped-")))
    bases: dict[str, int] = field(default_factory=free_bases)
    web: subprocess.Popen | None = None
    roles: dict[str, str] = field(default_factory=dict)  # scheduler program -> active / standby
    web_port: int = 0

    @property
    def var(self) -> Path:
        return self.root / "var"

    @property
    def url(self) -> str:
        return ",".join(f"nats://127.0.0.1:{self.bases['nats'] + i}" for i in range(3))

    @property
    def monitor_ports(self) -> str:
        return ",".join(str(self.bases["monitor"] + i) for i in range(3))

    def env(self) -> dict[str, str]:
        """The developer's environment without anything that points at their cluster, config or
        Telegram account: services get their users from the rendered supervisord.conf."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VALOR_", "SUPERVISOR_"))}
        config = self.root / "valor.toml"  # the shipped defaults, not a valor.toml in the checkout
        config.touch()
        env.update(VALOR_CONFIG=str(config), VALOR_CONTEXT=str(self.root / "context.json"),
                   VALOR_TG_API_ID="", VALOR_TG_API_HASH="", ANTHROPIC_API_KEY="")
        return env

    def cli_env(self) -> dict[str, str]:
        """What the ``valor`` CLI sees after ``make up``: the cluster and the ``cli`` user's password."""
        return dict(self.env(), VALOR_NATS_URL=self.url, VALOR_SECRETS=str(self.var / "secrets"))

    def _run(self, *argv: str, timeout: float = 180) -> None:
        # Output to a file, not a pipe: supervisord's daemon would hold a pipe open after it returns.
        with open(self.root / "up.log", "a+") as out:
            done = subprocess.run(argv, env=self.env(), cwd=ROOT, stdout=out, stderr=out, timeout=timeout)
            if done.returncode != 0:
                out.seek(0)
                raise RuntimeError(f"{' '.join(argv)} failed:\n{out.read()[-3000:]}")

    def up(self, web: bool = True) -> ShippedStack:
        py = str(VENV / "bin" / "python")
        self._run(py, "deploy/render.py", "--root", str(ROOT), "--var", str(self.var), "--venv", str(VENV),
                  "--nats-port-base", str(self.bases["nats"]), "--cluster-port-base", str(self.bases["cluster"]),
                  "--monitor-port-base", str(self.bases["monitor"]),
                  "--metrics-port-base", str(self.bases["metrics"]), "--context", str(self.root / "context.json"))
        self._run(str(VENV / "bin" / "supervisord"), "-c", str(self.var / "supervisord.conf"))
        self._run(py, "deploy/health.py", "wait", "--var", str(self.var), "--venv", str(VENV),
                  "--monitor-ports", self.monitor_ports, "--nats-url", self.url, "--timeout", "120")
        if web:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.web_port = s.getsockname()[1]
            log = open(self.var / "log" / "web.log", "ab")
            self.web = subprocess.Popen([str(VENV / "bin" / "valor"), "web", "--port", str(self.web_port)],
                                        env=self.cli_env(), cwd=ROOT, stdout=log, stderr=log, start_new_session=True)
            log.close()
        return self

    def supervisorctl(self, *args: str) -> str:
        """``supervisorctl`` on this stack (``stop scheduler:*``, ``start notifier``, ``status``)."""
        return subprocess.run([str(VENV / "bin" / "supervisorctl"), "-c", str(self.var / "supervisord.conf"), *args],
                              capture_output=True, text=True, timeout=120).stdout

    def user(self, name: str) -> dict[str, str]:
        """nats-py's connect options for one of the rendered NATS users (deploy/nats/permissions.toml)."""
        return {"user": name, "password": (self.var / "secrets" / f"nats-{name}.password").read_text().strip()}

    def processes(self) -> dict[str, int]:
        """Program name -> pid of every RUNNING program (``supervisorctl status``), the web and supervisord."""
        out = self.supervisorctl("status")
        found = {}
        for line in out.splitlines():
            fields = line.split()
            if len(fields) >= 4 and fields[1] == "RUNNING" and fields[2] == "pid":
                found[fields[0].split(":")[-1]] = int(fields[3].rstrip(","))
        if self.web is not None and self.web.poll() is None:
            found["web"] = self.web.pid
        with contextlib.suppress(OSError, ValueError):  # it relays every program's log lines to their files
            found["supervisord"] = int((self.var / "supervisord.pid").read_text())
        return {f"{name} ({self.roles[name]})" if name in self.roles else name: pid for name, pid in found.items()}

    def down(self) -> None:
        if self.web is not None and self.web.poll() is None:
            self.web.terminate()
            try:
                self.web.wait(10)
            except subprocess.TimeoutExpired:
                self.web.kill()
                self.web.wait()
        subprocess.run([str(VENV / "bin" / "python"), "deploy/health.py", "down", "--var", str(self.var),
                        "--venv", str(VENV)], env=self.env(), cwd=ROOT, capture_output=True, timeout=120)
        if not os.environ.get("VALOR_KEEP_NATS"):
            shutil.rmtree(self.root, ignore_errors=True)


# --- the shapes, as plan files and as commands ------------------------------------------------


def shape_plans(shape: str, promises: int, files: int) -> list[list[T]]:
    """``promises`` (about) of a shape, in ``files`` plans with names unique inside each."""
    if shape == "independent":
        units = noop_plans(promises, per_command=1)
    elif shape == "chain3":
        units = chain_plans(promises // 3)
    else:
        units = fanout_plans(promises // 11)
    out: list[list[T]] = [[] for _ in range(min(files, len(units)))]
    for i, unit in enumerate(units):
        k = i % len(out)
        n = len(out[k])
        renamed = {t.name: f"{t.name or 't'}{n}" for t in unit}  # chain "a" of the 5th unit is "a12" etc.
        out[k] += [T(name=renamed[t.name], type="noop", after=[renamed[a] for a in t.after]) for t in unit]
    return out


def plan_file(tasks: list[T]) -> str:
    return json.dumps({"tasks": [{"name": t.name, "type": t.type, **({"after": t.after} if t.after else {})}
                                 for t in tasks]})


# --- the drivers ------------------------------------------------------------------------------


async def _cli(stack: ShippedStack, *argv: str, stdin: str | None = None) -> str:
    proc = await asyncio.create_subprocess_exec(
        str(VENV / "bin" / "valor"), *argv, env=stack.cli_env(), cwd=ROOT,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    if proc.returncode != 0:
        raise RuntimeError(f"valor {argv[0]} exited {proc.returncode}: {err.decode()[-2000:]}")
    return out.decode()


async def through_cli(stack: ShippedStack, plans: list[list[T]]) -> list[int]:
    """Each plan: ``valor plan -`` (its ``NAME ID`` lines), then ``valor wait`` on those ids; all at once."""

    async def pipeline(tasks: list[T]) -> list[int]:
        out = await _cli(stack, "plan", "-", stdin=plan_file(tasks))
        ids = [int(line.split()[1]) for line in out.splitlines() if line.strip()]
        await _cli(stack, "wait", "--timeout", "600", *map(str, ids))
        return ids

    return [i for ids in await asyncio.gather(*map(pipeline, plans)) for i in ids]


async def through_api(client: ValorClient, plans: list[list[T]]) -> list[int]:
    async def one(tasks: list[T]) -> list[int]:
        ids = list((await client.submit(*tasks, timeout=120)).values())
        states = await client.wait(ids, timeout=600)
        assert set(states.values()) == {"succeeded"}, states
        return ids

    return [i for ids in await asyncio.gather(*map(one, plans)) for i in ids]


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for name, pid in pids.items():
        try:
            out[name] = cpu_seconds(pid)
        except OSError:
            out[name] = float("nan")  # it exited: a restart shows as nan, not as a wrong figure
    return out


async def engine_rate(client: ValorClient, ids: list[int]) -> float:
    """Promises per second on the log alone: first ``created`` to the last ``succeeded`` of these ids."""
    wanted = set(ids)
    created, ended = [], []
    for _, event in await client.events():
        if getattr(event, "id", None) in wanted:
            if isinstance(event, Created):
                created.append(event.at)
            elif isinstance(event, Succeeded):
                ended.append(event.at)
    return len(ids) / max(max(ended) - min(created), 1e-9)


async def run_shape(stack: ShippedStack, client: ValorClient, driver: str, shape: str, promises: int,
                    pipelines: int, tail: float = TAIL_SECONDS) -> dict:
    plans = shape_plans(shape, promises, pipelines)
    pids = stack.processes()
    before, me, children = _cpu(pids), time.process_time(), _children_cpu()
    t0 = time.perf_counter()
    ids = await (through_cli(stack, plans) if driver == "cli" else through_api(client, plans))
    seconds = time.perf_counter() - t0
    during = _cpu(pids)
    driver_cpu = (_children_cpu() - children) if driver == "cli" else (time.process_time() - me)
    await asyncio.sleep(tail)
    after = _cpu(pids)
    n = len(ids)
    per = 1e6 / n
    cpu = {name: round((during[name] - before[name]) * per) for name in pids}
    cpu_tail = {name: round((after[name] - during[name]) * per) for name in pids}
    cpu[f"driver ({'valor CLI processes' if driver == 'cli' else 'this client'})"] = round(driver_cpu * per)
    total = sum(v for v in cpu.values() if v == v) / per
    return {"promises": n, "per_s": n / seconds, "engine_per_s": await engine_rate(client, ids),
            "seconds": seconds, "cpu_us_per_promise": cpu, "cpu_us_per_promise_after": cpu_tail,
            "cpu_busy_of_all_cores": total / seconds / (os.cpu_count() or 1)}


async def light(nc, client: ValorClient, samples: int) -> dict:
    """At light load, one at a time: a no-op submitted until ``started`` is stored, and ``/help`` on the
    console until its 👀 and its reply, with the shipped pacing of a chat's messages and reactions."""
    return {"submit_to_start": await time_to_start(nc, client, samples),
            "chat": await console_replies(nc, 1, max(3, samples // 10), Telegram().chat_interval, warmup=2)}


async def shipped(promises: int = 3000, pipelines: int = 10, drivers: tuple[str, ...] = ("cli", "api"),
                  shapes: tuple[str, ...] = SHAPES, tail: float = TAIL_SECONDS, light_samples: int = 200) -> dict:
    stack = ShippedStack()
    try:
        await asyncio.to_thread(stack.up)
        env = stack.cli_env()
        nc = await bus.connect(stack.url, name="bench-shipped", **bus.credentials(env))
        try:
            client = ValorClient(nc, by="bench")
            await asyncio.sleep(2)  # the web and analytics finish their first read of the (empty) log
            active = await scheduler_leader(nc.jetstream()) or ""
            stack.roles = {name: "active" if f"-{pid}-" in active else "standby"
                           for name, pid in stack.processes().items() if name.startswith("scheduler")}
            idle = _cpu(stack.processes())
            await asyncio.sleep(5)
            idle_ms_per_s = {k: round((v - idle[k]) * 1000 / 5, 1) for k, v in _cpu(stack.processes()).items()
                             if k in idle}
            figures: dict = {"idle_cpu_ms_per_s": idle_ms_per_s}
            if light_samples:
                figures["light"] = await light(nc, client, light_samples)
            for driver in drivers:
                for shape in shapes:
                    figures[f"{driver}.{shape}"] = await run_shape(stack, client, driver, shape, promises,
                                                                   pipelines, tail)
            return figures
        finally:
            await nc.close()
    finally:
        await asyncio.to_thread(stack.down)


def table(figures: dict, targets: dict[str, float]) -> str:
    """Throughput per driver and shape beside the targets, then CPU per promise of every process."""
    runs = {k: v for k, v in figures.items() if isinstance(v, dict) and "per_s" in v}
    rows = [("shipped stack", "promises", "through driver /s", "engine alone /s", "busy of all cores")]
    for key, r in runs.items():
        rows.append((key, str(r["promises"]), f"{r['per_s']:,.0f} (target >= {targets['driver']:,})",
                     f"{r['engine_per_s']:,.0f} (target >= {targets['engine']:,})",
                     f"{r['cpu_busy_of_all_cores']:.0%}"))
    out = [_columns(rows), ""]
    names = list(dict.fromkeys(n for r in runs.values() for n in r["cpu_us_per_promise"]))
    rows = [("CPU us per promise", *runs, "idle ms/s")]
    idle = figures.get("idle_cpu_ms_per_s", {})
    for name in names:
        rows.append((name, *(_us(r["cpu_us_per_promise"].get(name), r["cpu_us_per_promise_after"].get(name))
                             for r in runs.values()), str(idle.get(name, ""))))
    rows.append(("total", *(f"{sum(v for v in r['cpu_us_per_promise'].values() if v == v):,}"
                            for r in runs.values()), ""))
    out += [_columns(rows), f"(+N: CPU in the {TAIL_SECONDS:g} s after the last promise ended, readers catching up)"]
    if light := figures.get("light"):
        start, chat = light["submit_to_start"], light["chat"]
        out += ["", f"light load: submit -> started p50 {start['p50_ms']:.1f} ms, p99 {start['p99_ms']:.1f} ms "
                f"(target p99 <= {targets['start_p99_ms']:g} ms, {start['samples']} samples); console message -> 👀 "
                f"p50 {chat['eyes_p50_ms']:.1f} ms, p99 {chat['eyes_p99_ms']:.1f} ms (target p99 <= "
                f"{targets['eyes_p99_ms']:g} ms, {chat['eyes_samples']} of {chat['samples']}), reply p99 "
                f"{chat['p99_ms']:.1f} ms"]
    return "\n".join(out)


def _us(during: float | None, after: float | None) -> str:
    if during is None:
        return ""
    return f"{during:,}" + (f" +{after:,}" if after else "")


def _columns(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
