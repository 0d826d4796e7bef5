"""Announces this executor's queues, slots and load (per pool of slots) in the ``valor_executors`` KV bucket.

The bucket has a TTL, so a crashed executor disappears on its own; a graceful stop
deletes its key at once.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable

import msgspec
from nats.js import JetStreamContext

from schemas.commands import ExecutorHeartbeat, SlotPool
from schemas.subjects import EXECUTORS_BUCKET

from . import logs


def beat(executor: str, pools: list[SlotPool]) -> ExecutorHeartbeat:
    """The totals beside the pools, so readers from before pools existed still see the executor."""
    return ExecutorHeartbeat(executor=executor, queues=[q for p in pools for q in p.queues],
                             slots=sum(p.slots for p in pools), busy=sum(p.busy for p in pools),
                             pools=list(pools), host=socket.gethostname(), pid=os.getpid(), at=time.time())


async def put(js: JetStreamContext, hb: ExecutorHeartbeat) -> bool:
    try:
        kv = await js.key_value(EXECUTORS_BUCKET)
        await kv.put(hb.executor, msgspec.json.encode(hb))
        return True
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        logs.warning("heartbeat.failed", executor=hb.executor, error=f"{type(exc).__name__}: {exc}")
        return False


async def announce(
    js: JetStreamContext, make: Callable[[], ExecutorHeartbeat], every: float, stop: asyncio.Event
) -> None:
    """Put a heartbeat every ``every`` seconds until ``stop`` is set; NATS errors are logged, not raised.

    Stopped by an event rather than by cancellation: nats-py swallows a CancelledError
    that lands inside its ``flush``, which would leave this loop running forever.
    """
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), every)
        except TimeoutError:
            await put(js, make())


async def withdraw(js: JetStreamContext, executor: str) -> None:
    try:
        kv = await js.key_value(EXECUTORS_BUCKET)
        await kv.delete(executor)
    except Exception as exc:  # the TTL removes it anyway
        logs.warning("heartbeat.withdraw_failed", executor=executor, error=f"{type(exc).__name__}: {exc}")
