"""The notifier: closes every loop a chat opened, from the promise log.

It replays ``PROMISES`` from the start into the board (an ordered consumer of
the kinds of event the board folds, ``reading.py``; the board is small, one
entry per promise born from a chat), and once it has read up to where the log
stood at start it plans the notices each changed promise is owed and hands
them to the outbox.  Everything it must remember
(intents, ``notified``) is in the log, so a restart is a replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from schemas import subjects
from schemas.events import decode_promise_event
from valor import bus
from valor.config import Config, load

from . import logs, reading
from .board import Board
from .outbox import Outbox
from .plan import Policy, digests, due
from .transport import Transport


class Notifier:
    def __init__(
        self,
        nc: Client,
        transport: Transport,
        config: Config | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        record_hook: Callable[[object], Awaitable[None]] | None = None,
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.transport = transport
        self.config = config or load()
        self.clock = clock
        self.board = Board()
        self.policy = Policy.of(self.config)
        self.outbox = Outbox(transport, self.record, self.config.telegram, clock, sleep)
        self.record_hook = record_hook  # tests: die between sending and recording
        self.ready = False  # read the log up to where it stood at start
        self.start_seq = 0
        self.dirty: set[int] = set()
        self._wake = asyncio.Event()
        self._tail = None
        self._loop: asyncio.Task | None = None

    async def start(self) -> None:
        await self.transport.connect()
        self.start_seq = await bus.patiently("PROMISES", lambda: reading.last_seq(self.js))
        self.ready = self.start_seq == 0
        self._tail = await bus.patiently("the PROMISES tail", lambda: self.js.subscribe(
            subjects.ALL_PROMISE_EVENTS, stream=subjects.PROMISES, cb=self._on_event,
            ordered_consumer=True, deliver_policy=DeliverPolicy.ALL, idle_heartbeat=1.0,
            config=ConsumerConfig(filter_subjects=reading.filters())))
        self._loop = asyncio.create_task(self._plan_forever(), name="plan")
        logs.info("notifier.started", log_seq=self.start_seq, history=self.transport.can_read_history)

    async def stop(self) -> None:
        if self._loop:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop
        await self.outbox.stop()
        if self._tail:
            with contextlib.suppress(Exception):
                await self._tail.unsubscribe()
        with contextlib.suppress(Exception):
            await self.transport.stop()

    async def _on_event(self, msg: Msg) -> None:
        seq = bus.stream_sequence(msg)
        event = None
        if not reading.skippable(msg.subject, self.board.items):
            with contextlib.suppress(msgspec.DecodeError):
                event = decode_promise_event(msg.data)
        if event is None:  # undecodable, or of a promise the board does not hold: seen, nothing to fold
            self.board.last_seq = max(self.board.last_seq, seq)
        else:
            self.dirty |= self.board.apply(event, seq)
        if not self.ready and self.board.last_seq >= self.start_seq:
            self.ready = True
            logs.info("notifier.replayed", promises=len(self.board.items), log_seq=self.board.last_seq)
        self._wake.set()

    async def _plan_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self.ready:
                continue
            dirty, self.dirty = self.dirty, set()
            for chat_id in self.board.take_reopened():
                self.outbox.reachable(chat_id)
            for chat_id, refusal in self.board.unreachable.items():  # after a restart, too
                self.outbox.refused(chat_id, refusal.reason)
            now, horizon = self.clock(), self.config.telegram.notice_horizon
            items = [item for i in sorted(dirty) if (item := self.board.items.get(i)) is not None]
            for item in items:
                for action in due(self.board, item, now, horizon, self.policy):
                    self.outbox.submit(action)
            for action in digests(self.board, items, now, horizon, self.policy):  # ended while we were away
                self.outbox.submit(action)

    async def record(self, event, msg_id: str) -> None:
        """Store a notifier fact; NATS being away is waited out (the action is not done until stored)."""
        if self.record_hook is not None:
            await self.record_hook(event)
        delay = 0.2
        while True:
            try:
                await bus.publish_event(self.js, event, msg_id, timeout=5)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logs.warning("notifier.record_retry", promise_id=event.id, error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def run_until_idle(self, quiet: float = 0.3, timeout: float = 30.0) -> None:
        """Return once the log is read, nothing is planned or queued, and ``quiet`` s passed so."""
        deadline = time.monotonic() + timeout
        calm_since = None
        while True:
            calm = self.ready and not self.dirty and not self._wake.is_set() and self.outbox.idle()
            if calm:
                calm_since = calm_since or time.monotonic()
                if time.monotonic() - calm_since >= quiet:
                    return
            else:
                calm_since = None
            if time.monotonic() > deadline:
                raise TimeoutError("notifier still busy")
            await asyncio.sleep(0.02)
