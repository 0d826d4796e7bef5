"""The executor: pulls work for its queues within its slots and runs each attempt.

Composition root of the service; production (``__main__``) and tests differ only
in the arguments passed: queues, slots, handlers, ids and timings.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from schemas import subjects
from schemas.commands import SlotPool, work_decoder
from schemas.events import Cancelled, InstructionsAdded, PromiseEvent, decode_promise_event
from valor import bus, metrics
from valor.client import ValorClient

from . import config, groups, heartbeat, logs, persist
from .attempt import CANCELLED, SHUTDOWN, AttemptRun, ack, describe
from .cancellations import Cancellations
from .coalesce import Window
from .consumer import Puller, ensure_consumer
from .context import Handler
from .instructions import Heard
from .slots import Pool, pools_for, queues_of, spec_of
from .tasks import builtin_handlers

# Under a backlog, up to this many messages per fetch, waiting at most this long for them.
BACKLOG_BATCH = 32
BACKLOG_WAIT = 0.05
# Room left in a message for the event's other fields and headers.
PAYLOAD_MARGIN = 16 * 1024


class _Pool:
    """Slots taken only by attempts of its queues (``slots.py``), and what runs in them."""

    def __init__(self, pool: Pool):
        self.queues = pool.queues
        self.slots = pool.slots
        self.free = asyncio.Semaphore(pool.slots)
        self.running: set[AttemptRun] = set()

    def announced(self) -> SlotPool:
        return SlotPool(queues=list(self.queues), slots=self.slots, busy=len(self.running))


class Executor:
    """Runs attempts from ``work.<queue>`` for each queue, within the slots of its pool.

    ``slots`` is what ``--slots`` takes (``slots.py``): a number shared by all
    ``queues`` (``None``: the queues it names), or slots per queue, e.g.
    ``"respond=2,default=4"`` or ``{"respond": 2, "default": 4}``.  ``handlers``
    are added to (and may replace) the built-in task types.
    """

    def __init__(
        self,
        nc: Client,
        queues: list[str] | None,
        slots: int | str | Mapping[str, int],
        handlers: Mapping[str, Handler] | None = None,
        executor_id: str | None = None,
        ack_wait: float | None = None,
        heartbeat_interval: float = config.HEARTBEAT_INTERVAL,
        fetch_timeout: float = config.FETCH_TIMEOUT,
        write_window: float | None = None,
    ):
        pools = pools_for(slots, queues)  # a SlotsError (a ValueError) names what is wrong
        self.id = executor_id or config.default_executor_id()
        if not config.is_token(self.id):
            raise ValueError(f"invalid executor id {self.id!r}: use letters, digits, '-' and '_'")
        self.nc = nc
        self.js = nc.jetstream()
        self.queues = queues_of(pools)
        self._pools = [_Pool(p) for p in pools]
        self._pool_of = {q: pool for pool in self._pools for q in pool.queues}
        self.slots = sum(p.slots for p in pools)
        self.handlers: dict[str, Handler] = {**builtin_handlers(), **(handlers or {})}
        self.ack_wait = ack_wait if ack_wait is not None else config.ack_wait()
        self.heartbeat_interval = heartbeat_interval
        self.fetch_timeout = fetch_timeout
        self.window = Window(write_window if write_window is not None else config.write_window(),
                             crowd=lambda: len(self._running))
        self._running: set[AttemptRun] = set()
        self._tasks: set[asyncio.Task] = set()
        self._pullers: list[asyncio.Task] = []
        self._heartbeat: asyncio.Task | None = None
        self._heartbeat_stop = asyncio.Event()
        self._cancel_sub = None
        self._instructions_sub = None
        self.cancellations: Cancellations | None = None
        self.heard: Heard | None = None
        self._stopping = False
        self._last_activity = time.monotonic()

    @property
    def busy(self) -> int:
        return len(self._running)

    def pools(self) -> list[SlotPool]:
        """Each pool's queues, slots and attempts running, as the heartbeat announces them."""
        return [p.announced() for p in self._pools]

    def _beat(self):
        metrics.BUSY_SLOTS.set(self.busy)
        return heartbeat.beat(self.id, self.pools())

    async def start(self) -> None:
        metrics.SLOTS.set(self.slots)
        await groups.stop_orphans()  # what a killed predecessor on this host left running
        for queue in self.queues:
            await bus.patiently(f"consumer for {queue}", lambda q=queue: ensure_consumer(self.js, q, self.ack_wait))
        # Cancelled events are stored in PROMISES; a core subscription sees them as they land.
        self._cancel_sub = await self.nc.subscribe(subjects.PROMISE_CANCELLED, cb=self._on_cancelled)
        # Instructions the user adds reach running attempts the same way.
        self._instructions_sub = await self.nc.subscribe(subjects.PROMISE_INSTRUCTIONS, cb=self._on_instructions)
        await self.nc.flush()  # the server has our subscriptions from here on
        self.cancellations = Cancellations(time.time())
        self.heard = Heard(time.time())
        # The first beat before start() returns: capacity is visible as soon as we are up.
        await bus.patiently("first heartbeat", lambda: heartbeat.put(self.js, self._beat()))
        self._heartbeat = asyncio.create_task(
            heartbeat.announce(self.js, self._beat, self.heartbeat_interval, self._heartbeat_stop)
        )
        self._pullers = [asyncio.create_task(self._pull(queue)) for queue in self.queues]
        logs.info("executor.started", executor=self.id, queues=self.queues, slots=spec_of(self._pools),
                  ack_wait=self.ack_wait, tasks=sorted(self.handlers))

    async def stop(self, grace: float = config.STOP_GRACE) -> None:
        """Stop pulling, let running attempts finish for ``grace`` seconds, hand back the rest."""
        if self._stopping:
            return
        self._stopping = True
        await _finish(self._pullers, self.fetch_timeout + 0.5)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace)
        for run in list(self._running):
            run.stop(SHUTDOWN)
        await _finish(self._tasks, 3.0)  # shell handlers need up to 2 s to kill their group
        self._heartbeat_stop.set()
        await _finish([self._heartbeat] if self._heartbeat else [], 3.0)
        await heartbeat.withdraw(self.js, self.id)
        for sub in (self._cancel_sub, self._instructions_sub):
            if sub is not None:
                try:
                    await sub.unsubscribe()
                except Exception:
                    pass
        logs.info("executor.stopped", executor=self.id)

    async def run_until_idle(self, quiet: float = 0.5, timeout: float = 30.0) -> None:
        """Return once nothing runs, nothing waits in our consumers and ``quiet`` s passed without work."""
        deadline = time.monotonic() + timeout
        while True:
            calm = not self._tasks and time.monotonic() - self._last_activity >= quiet
            if calm and await self._drained():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"executor {self.id} still busy after {timeout}s")
            await asyncio.sleep(0.05)

    async def _drained(self) -> bool:
        """No message of our queues in WORK: it keeps one until it is acked (a work queue).

        Not the consumer's counts: its ``num_pending`` can still be 0 just after a
        publish was stored (seen on a loaded machine), which ended the wait early.
        """
        try:
            for queue in self.queues:
                subject = subjects.work(queue)
                info = await self.js.stream_info(subjects.WORK, subjects_filter=subject)
                if (info.state.subjects or {}).get(subject):
                    return False
        except Exception:
            return False
        return True

    async def _pull(self, queue: str) -> None:
        puller = Puller(self.js, queue, self.ack_wait)
        pool = self._pool_of[queue]
        try:
            while not self._stopping:
                # Ask for work only when a slot is free, so the stream hands it to an idle executor.
                await pool.free.acquire()
                handed_off = False
                try:
                    if self._stopping:
                        return
                    msg = await puller.fetch_one(self.fetch_timeout)
                    if msg is None:
                        continue
                    handed_off = await self._hand_off(msg, pool)
                finally:
                    if not handed_off:
                        pool.free.release()
                await self._take_backlog(puller, pool)
        finally:
            await puller.close()

    async def _hand_off(self, msg: Msg, pool: _Pool) -> bool:
        """Start an attempt for ``msg`` in a slot of ``pool`` already taken; False if we are leaving."""
        self._last_activity = time.monotonic()
        if self._stopping:
            await _nak(msg)
            return False
        task = asyncio.create_task(self._handle(msg, pool))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _take_backlog(self, puller: Puller, pool: _Pool) -> None:
        """After a message came, take what else waits for the slots still free, in one fetch.

        One message per request keeps light load fast and spreads work across
        executors; under a backlog, asking per message would cap throughput at one
        round trip per attempt.
        """
        taken = 0
        while taken < BACKLOG_BATCH and not pool.free.locked():
            await pool.free.acquire()  # does not block: a slot is free
            taken += 1
        if not taken:
            return
        msgs = await puller.fetch(taken, BACKLOG_WAIT) if not self._stopping else []
        started = 0
        for msg in msgs:
            started += await self._hand_off(msg, pool)
        for _ in range(taken - started):
            pool.free.release()

    async def _handle(self, msg: Msg, pool: _Pool) -> None:
        """Run one work message; owns one slot of ``pool`` and releases it when done."""
        run = None
        try:
            try:
                item = work_decoder.decode(msg.data)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                reason = f"undecodable work item: {exc}"
                await persist.until_ok("dead_letter", lambda: bus.dead_letter(self.js, msg, "work", reason))
                return await ack(msg, subject=msg.subject)
            run = AttemptRun(self.js, msg, item, self.handlers, self.id, self.ack_wait,
                             max(64 * 1024, self.nc.max_payload - PAYLOAD_MARGIN), self.cancellations, self.window,
                             self.heard, self._read_events)
            self._running.add(run)
            pool.running.add(run)
            await run.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not take the loop down; JetStream redelivers
            logs.warning("attempt.crashed", subject=msg.subject, error=describe(exc),
                         **(run.fields if run else {}))
        finally:
            if run is not None:
                self._running.discard(run)
                pool.running.discard(run)
            pool.free.release()
            self._last_activity = time.monotonic()

    async def _on_cancelled(self, msg: Msg) -> None:
        try:
            event = decode_promise_event(msg.data)
        except msgspec.DecodeError:
            return
        if not isinstance(event, Cancelled):
            return
        if self.cancellations is not None:
            self.cancellations.heard(event.id)
        for run in list(self._running):
            if run.item.id == event.id:
                run.stop(CANCELLED)


    async def _on_instructions(self, msg: Msg) -> None:
        try:
            event = decode_promise_event(msg.data)
        except msgspec.DecodeError:
            return
        if not isinstance(event, InstructionsAdded):
            return
        if self.heard is not None:
            self.heard.heard(event)
        for run in list(self._running):
            if run.item.id == event.id:
                run.hear(event)

    async def _read_events(self, promise_id: int, name: str) -> list[PromiseEvent]:
        return [e for _, e in await ValorClient(self.nc).events(subjects.promise(promise_id, name))]


async def _nak(msg: Msg) -> None:
    try:
        await msg.nak()
    except Exception:
        pass


async def _finish(tasks, timeout: float) -> None:
    """Wait up to ``timeout`` for tasks, then cancel what is left and wait for it to unwind.

    Cancels again if a task is still running: nats-py can swallow a CancelledError
    (inside ``flush``), and a stop must not hang on that.
    """
    pending = {t for t in tasks if not t.done()}
    if pending and timeout > 0:
        _, pending = await asyncio.wait(pending, timeout=timeout)
    for _ in range(3):
        if not pending:
            return
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=2.0)
    for task in pending:
        logs.warning("executor.task_stuck", task=task.get_name())
