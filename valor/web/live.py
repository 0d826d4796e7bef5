"""The PROMISES log followed as it grows: what ``valor web`` and ``valor top`` read.

An ordered consumer on ``promise.*.*``.  Folding (``valor top``, and ``valor web``
when no scheduler serves reads), it replays the log, then keeps delivering new
events; each one goes through ``Projection.apply`` (the scheduler's fold) and the
read model's index, so the page answers the same queries a scheduler would.
Not folding (``valor web`` with the schedulers' read model, decision 48), it
starts at the stream's end and only notes which promise each new event moved:
the answers come from the service.  Readers wait for ``changed`` and ask which
promises moved since a sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
from nats.aio.client import Client
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext

from schemas import subjects
from schemas.events import PromiseEvent, decode_promise_event
from services.scheduler.projection import Projection
from services.scheduler.readmodel import ReadIndex, StatusQuery
from valor.client import ValorClient

log = logging.getLogger("valor.web")


class LiveLog:
    def __init__(self, js: JetStreamContext, *, fold: bool = True) -> None:
        self.js = js
        self.fold = fold
        self.state = Projection()
        self.index = ReadIndex(self.state)
        self.received = 0  # messages delivered: a page that does not fold reads only what is new
        self.events: dict[int, list[PromiseEvent]] = {}
        self.touched: dict[int, int] = {}  # promise id -> stream seq of its latest event
        self.seq = 0  # last stream sequence received (decodable or not)
        self._changed = asyncio.Event()
        self._caught_up = asyncio.Event()
        self._until = 0
        self._sub = None

    async def start(self, timeout: float = 60.0) -> LiveLog:
        """Subscribe and return once the log as it was at the start is folded in."""
        info = await self.js.stream_info(subjects.PROMISES)
        self._until = info.state.last_seq
        if info.state.messages == 0 or not self.fold:
            self._caught_up.set()
        if not self.fold:
            # Whatever arrives later than the stream's end now is new; DeliverPolicy.NEW could start
            # after an event stored between this and the subscription, so start just past the end.
            self.seq = info.state.last_seq
        start = (ConsumerConfig(deliver_policy=DeliverPolicy.ALL) if self.fold else
                 ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.seq + 1))
        self._sub = await self.js.subscribe(subjects.ALL_PROMISE_EVENTS, stream=subjects.PROMISES,
                                            cb=self._on_msg, ordered_consumer=True, config=start)
        await asyncio.wait_for(self._caught_up.wait(), timeout)
        return self

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def _on_msg(self, msg) -> None:
        meta = msg.metadata
        seq = meta.sequence.stream
        if seq <= self.seq:
            return  # redelivered after the ordered consumer reset itself
        self.seq = seq
        self.received += 1
        if not self.fold:
            if (pid := subjects.promise_id_of(msg.subject)) is not None:
                self.touched[pid] = seq
        else:
            try:
                event = decode_promise_event(msg.data)
            except msgspec.DecodeError:
                event = None
            if event is not None:
                # Kept even when the fold ignores it: `valor show` lists it in the timeline too.
                self.state.apply(event, seq)
                self.index.touch(event)
                self.events.setdefault(event.id, []).append(event)
                self.touched[event.id] = seq
        if seq >= self._until or meta.num_pending == 0:
            self._caught_up.set()
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self, timeout: float | None = None) -> bool:
        """Wait for the next event; False when ``timeout`` passed first."""
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def changed_since(self, seq: int) -> list[int]:
        """Ids of the promises whose state moved after stream sequence ``seq``, oldest first."""
        return sorted(pid for pid, at in self.touched.items() if at > seq)

    async def status(self, client: ValorClient) -> dict:
        """``client.status()``, its counts and unreachable chats taken from this fold when it folds the log."""
        if not self.fold:
            return await client.status()
        return await client.status(dict(self.state.counts()), ReadIndex(self.state).unreachable())

    def recent(self, n: int) -> list[int]:
        """The ``n`` promises that moved last, most recent first."""
        return sorted(self.touched, key=self.touched.__getitem__, reverse=True)[:n]


async def follow(nc: Client, who: str = "web") -> LiveLog:
    """The log followed from its end when a scheduler serves reads; else replayed and folded here."""
    served = await ValorClient(nc, by=who).served(StatusQuery()) is not None
    if not served:
        log.warning("%s: no scheduler answers reads; folding the whole PROMISES log here (slower to start)", who)
    return await LiveLog(nc.jetstream(), fold=not served).start()
