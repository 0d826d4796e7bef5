"""The durable pull consumer per queue, and a fetch that never kills its caller.

Every executor serving ``<queue>`` shares the durable ``exec-<queue>``: the
stream hands each message to one of them.  We pull one message per free slot
with ``fetch(1)``: a batch pull can leave an orphaned lingering request on the
server that captures later messages and stalls the next fetch for its whole
timeout (nats.py #933, #986).  A single-message pull with a short expiry bounds
that to one message, which the next fetch takes from the local buffer at once.
"""

from __future__ import annotations

import asyncio

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError, NotFoundError

from schemas import subjects

from . import logs

# Bounds attempts in flight for one queue across all executors; capacity is set by slots.
MAX_ACK_PENDING = 10_000


def consumer_name(queue: str) -> str:
    return f"exec-{queue}"


def consumer_config(queue: str, ack_wait: float) -> ConsumerConfig:
    return ConsumerConfig(
        name=consumer_name(queue),
        durable_name=consumer_name(queue),
        filter_subject=subjects.work(queue),
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait,
        max_ack_pending=MAX_ACK_PENDING,
        # An executor crash is not a failure of the attempt: redeliver for as long as it takes.
        max_deliver=-1,
    )


async def ensure_consumer(js: JetStreamContext, queue: str, ack_wait: float) -> None:
    """Create the queue's consumer if missing; an existing one is left as operators set it."""
    try:
        info = await js.consumer_info(subjects.WORK, consumer_name(queue))
        if info.config.ack_wait and abs(info.config.ack_wait - ack_wait) > 1e-3:
            logs.warning("consumer.ack_wait_differs", queue=queue, configured=info.config.ack_wait, wanted=ack_wait)
        return
    except NotFoundError:
        pass
    try:
        await js.add_consumer(subjects.WORK, consumer_config(queue, ack_wait))
    except BadRequestError as exc:  # another executor created it first
        if "already" not in str(exc):
            raise


class Puller:
    """Fetches single work messages for one queue, surviving timeouts, reconnects and deletions."""

    def __init__(self, js: JetStreamContext, queue: str, ack_wait: float):
        self.js = js
        self.queue = queue
        self.ack_wait = ack_wait
        self._sub: JetStreamContext.PullSubscription | None = None
        self._failures = 0

    async def fetch_one(self, timeout: float) -> Msg | None:
        """The next message, or None if none came in time or NATS could not be asked."""
        msgs = await self.fetch(1, timeout)
        return msgs[0] if msgs else None

    async def fetch(self, n: int, timeout: float) -> list[Msg]:
        """Up to ``n`` messages; with a backlog they come at once (nats-py asks with no_wait first)."""
        try:
            if self._sub is None:
                await ensure_consumer(self.js, self.queue, self.ack_wait)
                self._sub = await self.js.pull_subscribe_bind(durable=consumer_name(self.queue), stream=subjects.WORK)
            msgs = await self._sub.fetch(n, timeout=timeout)
            self._failures = 0
            return msgs
        except TimeoutError:  # nats.errors.TimeoutError and FetchTimeoutError included
            return []  # no work now: normal
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # reconnecting, consumer deleted, server restarting...
            self._failures += 1
            logs.warning("fetch.error", queue=self.queue, error=f"{type(exc).__name__}: {exc}", failures=self._failures)
            await self.close()  # rebuilt (and the consumer re-ensured) on the next call
            await asyncio.sleep(min(5.0, 0.1 * 2**self._failures))
            return []

    async def close(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception:
                pass
