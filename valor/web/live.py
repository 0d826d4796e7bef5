"""The PROMISES log folded as it grows: what ``valor web`` and ``valor top`` read.

An ordered consumer on ``promise.*.*`` replays the log, then keeps delivering
new events; each one goes through ``Projection.apply`` (the scheduler's fold),
so the dashboard shows exactly the states the CLI and the scheduler compute.
Readers wait for ``changed`` and ask which promises moved since a sequence.
"""

from __future__ import annotations

import asyncio
import contextlib

import msgspec
from nats.js.api import DeliverPolicy
from nats.js.client import JetStreamContext

from schemas import subjects
from schemas.events import PromiseEvent, decode_promise_event
from services.scheduler.projection import Projection


class LiveLog:
    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self.state = Projection()
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
        if info.state.messages == 0:
            self._caught_up.set()
        self._sub = await self.js.subscribe(subjects.ALL_PROMISE_EVENTS, stream=subjects.PROMISES,
                                            cb=self._on_msg, ordered_consumer=True,
                                            deliver_policy=DeliverPolicy.ALL)
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
        try:
            event = decode_promise_event(msg.data)
        except msgspec.DecodeError:
            event = None
        if event is not None:
            # Kept even when the fold ignores it: `valor show` lists it in the timeline too.
            self.state.apply(event, seq)
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

    def recent(self, n: int) -> list[int]:
        """The ``n`` promises that moved last, most recent first."""
        return sorted(self.touched, key=self.touched.__getitem__, reverse=True)[:n]
