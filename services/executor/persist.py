"""Reading and writing the log with retries: what must be stored is retried until it is.

An executor that cannot reach NATS keeps its attempt (and its ``in_progress``
keep-alive) and retries with backoff; the deterministic ``Nats-Msg-Id`` makes a
retry that did land the first time a no-op.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import BadRequestError, NotFoundError

from schemas import subjects
from schemas.events import PromiseEvent, decode_promise_event
from valor import bus

from . import logs

T = TypeVar("T")
PUBLISH_TIMEOUT = 2.0
MAX_BACKOFF = 5.0


class PromiseCancelled(Exception):
    """The log refused an attempt's write: its promise was cancelled first."""


async def until_ok(what: str, fn: Callable[[], Awaitable[T]], **fields: object) -> T:
    delay = 0.1
    while True:
        try:
            return await fn()
        except (asyncio.CancelledError, PromiseCancelled):
            raise
        except Exception as exc:
            logs.warning(f"{what}.retry", error=f"{type(exc).__name__}: {exc}", delay=delay, **fields)
            await asyncio.sleep(delay)
            delay = min(MAX_BACKOFF, delay * 2)


async def store(js: JetStreamContext, event: msgspec.Struct, msg_id: str, unless_cancelled: bool = False) -> PubAck:
    """Publish an event and return only once the stream acknowledged it.

    ``unless_cancelled``: the write is refused, atomically in the stream, once the
    promise has a ``cancelled`` event, so no attempt starts or ends after its
    promise was cancelled; that raises ``PromiseCancelled``.
    """
    unless = subjects.promise(event.id, "cancelled") if unless_cancelled else None  # type: ignore[attr-defined]

    async def publish() -> PubAck:
        try:
            return await bus.publish_event(js, event, msg_id, timeout=PUBLISH_TIMEOUT, unless=unless)
        except BadRequestError as exc:
            if unless is not None and exc.err_code == bus.WRONG_LAST_SEQUENCE:
                raise PromiseCancelled(event.id) from None  # type: ignore[attr-defined]
            raise

    return await until_ok("publish", publish, msg_id=msg_id)


async def last_event(js: JetStreamContext, promise_id: int, name: str) -> PromiseEvent | None:
    """The promise's last event of that name, or None (undecodable counts as none)."""
    try:
        raw = await js.get_last_msg(subjects.PROMISES, subjects.promise(promise_id, name))
    except NotFoundError:
        return None
    try:
        return decode_promise_event(raw.data or b"")
    except msgspec.DecodeError:
        return None
