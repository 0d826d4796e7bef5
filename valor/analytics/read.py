"""Reading a stream after a sequence: an ordered consumer, stopped after a batch."""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from schemas import subjects

from .rows import Raw

FILTERS = {
    subjects.PROMISES: subjects.ALL_PROMISE_EVENTS,
    subjects.CHAT: "chat.*.in",
    subjects.DLQ: "dlq.>",
}


async def read_after(js: JetStreamContext, stream: str, after: int, last_seq: int, limit: int,
                     idle: float = 2.0) -> list[Raw]:
    """Up to ``limit`` messages with sequence > ``after``, up to ``last_seq``, in order.

    Stops early when nothing arrives for ``idle`` seconds (e.g. the last
    messages were deleted), so a sync never hangs on a gap.
    """
    if last_seq <= after:
        return []
    out: list[Raw] = []
    done = asyncio.Event()

    async def on_msg(msg) -> None:
        if done.is_set():
            return
        meta = msg.metadata
        out.append(Raw(meta.sequence.stream, msg.subject, msg.data or b"", dict(msg.headers or {}),
                       meta.timestamp.timestamp()))
        if len(out) >= limit or meta.sequence.stream >= last_seq or meta.num_pending == 0:
            done.set()

    config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1)
    sub = await js.subscribe(FILTERS[stream], stream=stream, cb=on_msg, ordered_consumer=True, config=config)
    try:
        while not done.is_set():
            seen = len(out)
            try:
                await asyncio.wait_for(done.wait(), idle)
            except TimeoutError:
                if len(out) == seen:
                    break
    finally:
        await sub.unsubscribe()
    return out
