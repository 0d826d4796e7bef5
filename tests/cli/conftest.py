"""A real Valor for the CLI to talk to: nats-server, scheduler and executor.

The services run on their own event loop in a background thread, so the CLI
can be invoked in-process with click's CliRunner (which calls ``asyncio.run``).
One stack serves the whole module; every test creates its own promises.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner, Result

from services.executor.context import AttemptContext, TaskFailed
from services.executor.worker import Executor
from services.scheduler.service import Scheduler
from valor import bus
from valor.cli import main
from valor.config import DEFAULT, Approval, TaskType
from valor.natsserver import NatsCluster

EXECUTOR_ID = "exec-cli-test"

_failed_once: set[str] = set()


async def flaky(ctx: AttemptContext) -> dict[str, Any]:
    """Fails (for good) the first promise that runs with a given input, succeeds after that."""
    token = str(ctx.input)
    if token not in _failed_once:
        _failed_once.add(token)
        raise TaskFailed(f"flaky: first run of {token} fails", retryable=False)
    return {"ok": token}


async def plan_two_steps(ctx: AttemptContext) -> dict[str, Any]:
    """The respond agent of these tests: every chat message asks for two echo steps, one after the other."""
    return {"reply": "ok", "promises": [{"name": "a", "type": "echo"}, {"name": "b", "type": "echo", "after": ["a"]}]}


_gates: dict[str, asyncio.Event] = {}


def _gate(token: str) -> asyncio.Event:
    return _gates.setdefault(token, asyncio.Event())


async def held(ctx: AttemptContext) -> dict[str, Any]:
    """Reports progress, then runs until the test releases its input (``Stack.release``).

    A promise that stays ``running`` for as long as a test needs to look at it,
    where a sleep of a fixed length may end before a busy machine has looked.
    """
    token = str(ctx.input)
    await ctx.progress(f"held until {token} is released")
    await _gate(token).wait()
    return {"released": token}


class Stack:
    def __init__(self, url: str) -> None:
        self.url = url
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="valor-stack", daemon=True)

    def call(self, coro: Coroutine, timeout: float = 20.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def release(self, token: str) -> None:
        """Lets the ``held`` promise whose input is ``token`` finish."""
        self.loop.call_soon_threadsafe(_gate(token).set)

    def start(self) -> Stack:
        self.thread.start()
        self.call(self._start())
        return self

    async def _start(self) -> None:
        self.nc = await bus.connect(self.url, name="cli-test-stack")
        # The built-in types plus flaky and held, whose handlers only this test's executor has.
        # Plans a chat asks for with echo steps wait for approval; the CLI's own plans never do.
        config = msgspec.structs.replace(DEFAULT, types={**DEFAULT.types, "flaky": TaskType(handler="flaky"),
                                                         "held": TaskType(handler="held")},
                                         approval=Approval(types=["echo"]))
        self.scheduler = Scheduler(self.nc, config=config, lease_ttl=2.0)
        await self.scheduler.start()
        self.executor = Executor(self.nc, None, "default=4,respond=1", handlers={"flaky": flaky, "held": held, "respond": plan_two_steps}, executor_id=EXECUTOR_ID,
                                 fetch_timeout=0.2, heartbeat_interval=0.3)
        await self.executor.start()
        # The scheduler dispatches only to capacity it has seen announced.
        for _ in range(200):
            if self.scheduler.leader and EXECUTOR_ID in self.scheduler.executors:
                return
            await asyncio.sleep(0.05)
        raise RuntimeError("the scheduler never led or never saw the executor")

    async def _stop(self) -> None:
        await self.executor.stop(grace=1.0)
        await self.scheduler.stop()
        await self.nc.close()

    def stop(self) -> None:
        try:
            self.call(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture(scope="module")
def stack():
    cluster = NatsCluster(size=1).start()
    running = Stack(cluster.url).start()
    yield running
    try:
        running.stop()
    finally:
        cluster.cleanup()


@pytest.fixture
def valor(stack):
    """``valor("show", "3", "--json")`` -> click Result, against the test stack."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(main, list(args), input=input, env={"VALOR_NATS_URL": stack.url},
                             catch_exceptions=False)

    return invoke
