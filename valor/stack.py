"""A whole Valor as real processes, for recovery tests and benchmarks: we play the supervisor.

NATS nodes come from ``valor.natsserver``; the scheduler and executors run as
``python -m services.<name>`` subprocesses that the tests kill -9 and restart.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from valor.natsserver import NatsCluster

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Service:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen | None = None
    cwd: Path = ROOT

    def start(self) -> None:
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=out, start_new_session=True,
                                     cwd=self.cwd)
        out.close()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Stack:
    nats: NatsCluster
    schedulers: int = 2
    executors: int = 2
    slots: int | str = 4  # --slots: a number the queues share, or per queue ("respond=2,default=4")
    queues: str = "default,respond,code"
    env_extra: dict[str, str] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        env = dict(os.environ, VALOR_NATS_URL=self.nats.url, VALOR_REPLICAS=str(len(self.nats.nodes)),
                   VALOR_ACK_WAIT="3", VALOR_LOG_LEVEL="INFO")
        env.update(self.env_extra)
        self.env = env
        py = sys.executable
        for i in range(self.schedulers):
            name = f"scheduler-{i + 1}"
            self.services[name] = Service(name, [py, "-m", "services.scheduler"], env, self.nats.root / f"{name}.log")
        for i in range(self.executors):
            name = f"executor-{i + 1}"
            argv = [py, "-m", "services.executor", "--queues", self.queues, "--slots", str(self.slots), "--id", name]
            self.services[name] = Service(name, argv, env, self.nats.root / f"{name}.log")

    def add(self, name: str, argv: list[str]) -> Service:
        """Another process under the same supervision (e.g. ingest and notifier on a fake Telegram)."""
        self.services[name] = Service(name, argv, self.env, self.nats.root / f"{name}.log")
        return self.services[name]

    def start(self) -> Stack:
        for s in self.services.values():
            s.start()
        return self

    def restart(self, name: str) -> None:
        """What a supervisor does after a crash: start it again (its state is in NATS)."""
        self.services[name].kill()
        self.services[name].start()

    def supervise(self, hold: Collection[str] = ()) -> list[str]:
        """Like supervisord's ``autorestart``: start again every service that exited on its own.

        ``hold`` names services that are down on purpose.  Returns what was restarted.
        """
        restarted = []
        for name, s in self.services.items():
            if name not in hold and s.proc is not None and not s.alive:
                s.start()
                restarted.append(name)
        return restarted

    def stop(self) -> None:
        for s in self.services.values():
            s.stop()

    def kill(self) -> None:
        for s in self.services.values():
            s.kill()

    def logs(self) -> str:
        return "\n".join(f"== {s.name}\n{s.log.read_text()[-3000:]}" for s in self.services.values() if s.log.exists())
