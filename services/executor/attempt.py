"""One work message from receipt to ack: skip if done, start, run, record, then ack.

The work message is acked only after the result is stored in ``PROMISES``; if
this process dies anywhere before that, the message is redelivered and the next
executor either finds the result in the log or runs the attempt again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

import msgspec
from nats.aio.msg import Msg
from nats.errors import MsgAlreadyAckdError
from nats.js import JetStreamContext

from schemas.commands import WorkItem
from schemas.events import (
    AttemptFailed,
    AttemptStopped,
    InstructionsAdded,
    InstructionsDelivered,
    Progress,
    PromiseEvent,
    Started,
    Succeeded,
)
from schemas.subjects import msg_id_for_event
from valor import bus, metrics

from . import groups, logs, persist
from .cancellations import Cancellations
from .coalesce import Window
from .context import AttemptContext, Handler, TaskFailed
from .instructions import Heard, Instructions

# Reads every event of one promise's subject (``promise.<id>.<name>``), in log order.
ReadEvents = Callable[[int, str], Awaitable[list[PromiseEvent]]]

PROGRESS_EVERY = 0.5  # seconds: at most ~2 progress events per attempt per second
MAX_ERROR = 4000
CANCELLED, SHUTDOWN = "cancelled", "shutdown"


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class AttemptRun:
    def __init__(
        self,
        js: JetStreamContext,
        msg: Msg,
        item: WorkItem,
        handlers: Mapping[str, Handler],
        executor: str,
        ack_wait: float,
        max_result_bytes: int,
        cancellations: Cancellations | None = None,
        window: Window | None = None,
        heard: Heard | None = None,
        read_events: ReadEvents | None = None,
    ):
        self.js = js
        self.msg = msg
        self.item = item
        self.handlers = handlers
        self.executor = executor
        self.ack_wait = ack_wait
        self.max_result_bytes = max_result_bytes
        self.delivery = msg.metadata.num_delivered
        self.cancellations = cancellations
        self.window = window
        self.heard = heard
        self.read_events = read_events
        self.instructions = Instructions(item.instructions, self._delivered)
        self.stopped: str | None = None  # CANCELLED (promise cancelled) or SHUTDOWN (we are leaving)
        self._handler_task: asyncio.Task | None = None
        self._ctx: AttemptContext | None = None
        self._began = 0.0
        self._progress_n = 0
        self._progress_at = float("-inf")

    @property
    def fields(self) -> dict[str, object]:
        return {"promise_id": self.item.id, "attempt": self.item.attempt, "delivery": self.delivery}

    def hear(self, instruction: InstructionsAdded) -> None:
        """Instructions recorded for this promise: for the handler, before it starts or while it runs."""
        self.instructions.add([instruction])

    def stop(self, reason: str) -> None:
        if self.stopped is None:
            self.stopped = reason
            logs.info("attempt.stopping", reason=reason, **self.fields)
        if self._handler_task is not None:
            self._handler_task.cancel()

    async def run(self) -> None:
        done = asyncio.Event()
        # Most attempts end well before a keep-alive is due: a timer is cheaper than a task each.
        keepalive: list[asyncio.Task] = []
        due = asyncio.get_running_loop().call_later(
            self.ack_wait / 3, lambda: keepalive.append(asyncio.create_task(self._keep_alive(done, first=True))))
        try:
            # A run of this promise that outlived its executor (kill -9) ends before anything else:
            # two runs never write one workspace, and a cancelled promise's run ends here too.
            await groups.stop_leftovers(self.item.id)
            skip = await persist.until_ok("check", self._already_done, **self.fields)
            if skip:
                logs.info("attempt.skipped", reason=skip, **self.fields)
                return await self._ack()
            if self.stopped:
                return await self._leave()
            await persist.until_ok("instructions", self._instructions_since_dispatch, **self.fields)
            # The handler need not wait for `started` to be stored, only its result does:
            # both go out on one connection, so the log keeps them in order.
            started = asyncio.create_task(self._store_started())
            logs.info("attempt.started", task=self.item.task, executor=self.executor, **self.fields)
            try:
                outcome = await self._execute()
            finally:
                await started
            if self.stopped or outcome is None:
                return await self._leave()
            name = "succeeded" if isinstance(outcome, Succeeded) else "attempt_failed"
            try:
                await self._store(outcome, msg_id_for_event(self.item.id, name, self.item.attempt))
            except persist.PromiseCancelled:  # cancelled while it ran, before we heard of it
                self.stopped = CANCELLED
                return await self._leave()
            metrics.ATTEMPTS.labels(self.item.task, "succeeded" if name == "succeeded" else "failed").inc()
            metrics.count_spend(self.item.task, outcome.evidence)
            metrics.ATTEMPT_SECONDS.labels(self.item.task).observe(outcome.duration)
            logs.info(f"attempt.{name}", duration=round(outcome.duration, 3), **self.fields,
                      **({"error": outcome.error[:200], "retryable": outcome.retryable} if name == "attempt_failed" else {}))
            await self._ack()
        finally:
            due.cancel()
            done.set()  # an event, not only cancel: nats-py may swallow a CancelledError
            for task in keepalive:
                task.cancel()
            if self._handler_task is not None and not self._handler_task.done():
                self._handler_task.cancel()

    async def _already_done(self) -> str | None:
        """Why this work needs no run: the promise ended, or (on redelivery) this attempt did."""
        item = self.item
        if self.cancellations is not None:
            if item.id in self.cancellations:
                return "promise already cancelled"
            if self.delivery == 1 and self.cancellations.cover(self.msg.metadata.timestamp.timestamp()):
                return None  # queued while we listened: no cancellation could pass us by
        # One round trip, not three: the reads go out together.
        names = ("succeeded", "failed", "cancelled")
        ended = await asyncio.gather(*(persist.last_event(self.js, item.id, name) for name in names))
        for name, event in zip(names, ended, strict=True):
            if event is not None:
                return f"promise already {name}"
        if self.delivery > 1:
            failed = await persist.last_event(self.js, item.id, "attempt_failed")
            if failed is not None and failed.attempt >= item.attempt:
                return "attempt result already recorded"
            dispatched = await persist.last_event(self.js, item.id, "dispatched")
            if dispatched is not None and dispatched.attempt > item.attempt:
                return "a newer attempt was dispatched"
        return None

    async def _instructions_since_dispatch(self) -> None:
        """Instructions recorded after the work item was built: heard, or (if we may have missed some) read."""
        if self.heard is not None:
            self.instructions.add(self.heard.of(self.item.id))
            if self.delivery == 1 and self.heard.cover(self.msg.metadata.timestamp.timestamp()):
                return
        if self.read_events is None:
            return
        last = await persist.last_event(self.js, self.item.id, "instructions_added")
        if last is None or any(i.request_id == last.request_id for i in self.item.instructions):
            return  # the work item has them all
        self.instructions.add(e for e in await self.read_events(self.item.id, "instructions_added")
                              if isinstance(e, InstructionsAdded))

    def _started(self) -> Started:
        return Started(id=self.item.id, attempt=self.item.attempt, executor=self.executor,
                       delivery=self.delivery, at=time.time())

    async def _execute(self) -> Succeeded | AttemptFailed | None:
        """The attempt's result event, or None if it was stopped before it had one."""
        handler = self.handlers.get(self.item.task)
        if handler is None:
            known = ", ".join(sorted(self.handlers))
            return self._failed(f"unknown task type '{self.item.task}'; known: {known}", False, 0.0)
        ctx = AttemptContext.of(self.item, self.executor, self.delivery, self._progress, self.instructions)
        self._ctx, self._began = ctx, time.monotonic()
        self.instructions.start()
        self._handler_task = asyncio.create_task(self._call(handler, ctx))
        if self.stopped:  # cancelled while we were recording Started
            self._handler_task.cancel()
        try:
            return await self._handler_task
        except asyncio.CancelledError:
            if self.stopped and not asyncio.current_task().cancelling():
                return None
            raise

    async def _call(self, handler: Handler, ctx: AttemptContext) -> Succeeded | AttemptFailed:
        began = time.monotonic()
        timeout = self.item.timeout
        try:
            async with asyncio.timeout(timeout) as deadline:
                result = await handler(ctx)
        except TimeoutError as exc:
            if deadline.expired():
                return self._failed(f"timed out after {timeout:g}s", True, time.monotonic() - began, ctx)
            return self._failed(describe(exc), True, time.monotonic() - began, ctx)
        except TaskFailed as exc:
            return self._failed(exc.error, exc.retryable, time.monotonic() - began, ctx)
        except Exception as exc:
            return self._failed(describe(exc), True, time.monotonic() - began, ctx)
        duration = time.monotonic() - began
        try:
            size = len(msgspec.json.encode(result)) + len(msgspec.json.encode(ctx.evidence))
        except (TypeError, msgspec.EncodeError) as exc:
            return self._failed(f"result is not JSON-encodable: {exc}", False, duration, ctx)
        if size > self.max_result_bytes:
            return self._failed(f"result too large: {size} bytes, limit {self.max_result_bytes}", False, duration, ctx)
        return Succeeded(id=self.item.id, attempt=self.item.attempt, result=result, duration=duration,
                         evidence=ctx.evidence, at=time.time())

    def _failed(self, error: str, retryable: bool, duration: float,
                ctx: AttemptContext | None = None) -> AttemptFailed:
        return AttemptFailed(id=self.item.id, attempt=self.item.attempt, error=error[:MAX_ERROR],
                             retryable=retryable, duration=duration, evidence=ctx.evidence if ctx else None,
                             at=time.time())

    async def _progress(self, text: str, fraction: float | None = None) -> None:
        now = time.monotonic()
        if self.stopped or now - self._progress_at < PROGRESS_EVERY:
            return
        self._progress_at = now
        self._progress_n += 1
        if not isinstance(fraction, int | float) or isinstance(fraction, bool):
            fraction = None
        else:
            fraction = min(1.0, max(0.0, float(fraction)))
        event = Progress(id=self.item.id, attempt=self.item.attempt, text=str(text)[:1000], fraction=fraction, at=time.time())
        try:  # best effort: progress is never worth failing or stalling an attempt
            if self.window is not None:  # behind `started`, which may still wait in the window
                await self.window.join()
            await bus.publish_event(
                self.js, event, msg_id_for_event(self.item.id, "progress", self.item.attempt, self._progress_n),
                timeout=persist.PUBLISH_TIMEOUT,
            )
        except Exception as exc:
            logs.warning("progress.lost", error=describe(exc), **self.fields)

    async def _delivered(self, instruction: InstructionsAdded) -> None:
        """Record that the running attempt took ``instruction`` in; best effort, like progress."""
        event = InstructionsDelivered(id=self.item.id, attempt=self.item.attempt, request_id=instruction.request_id,
                                      at=time.time())
        msg_id = msg_id_for_event(self.item.id, "instructions_delivered", self.item.attempt, instruction.request_id)
        try:
            if self.window is not None:
                await self.window.join()
            await bus.publish_event(self.js, event, msg_id, timeout=persist.PUBLISH_TIMEOUT)
        except Exception as exc:
            logs.warning("instructions_delivered.lost", error=describe(exc), request_id=instruction.request_id,
                         **self.fields)

    async def _keep_alive(self, done: asyncio.Event, first: bool = False) -> None:
        # Tell JetStream we are still on it, well before ack_wait would redeliver.
        while not done.is_set():
            if not first:
                try:
                    await asyncio.wait_for(done.wait(), self.ack_wait / 3)
                    return
                except TimeoutError:
                    pass
            first = False
            try:
                await self.msg.in_progress()
            except Exception as exc:
                logs.warning("in_progress.failed", error=describe(exc), **self.fields)

    async def _leave(self) -> None:
        if self.stopped == SHUTDOWN:
            # Hand the attempt back now rather than after ack_wait; it is not a failure.
            try:
                await self.msg.nak()
            except Exception:
                pass
            logs.info("attempt.returned", **self.fields)
            return
        logs.info("attempt.cancelled", **self.fields)
        await self._record_stopped()
        await self._ack()

    async def _record_stopped(self) -> None:
        """A cancelled attempt's spend and evidence, recorded after the ``cancelled`` (decision 47)."""
        evidence = self._ctx.evidence if self._ctx is not None else None
        if evidence is None:
            return
        event = AttemptStopped(id=self.item.id, attempt=self.item.attempt, reason="the promise was cancelled",
                               duration=time.monotonic() - self._began, evidence=evidence, at=time.time())
        try:
            if self.window is not None:
                await self.window.join()
            await persist.store(self.js, event, msg_id_for_event(self.item.id, "attempt_stopped", self.item.attempt))
        except Exception as exc:  # the spend is lost from the log, never the ack
            logs.warning("attempt_stopped.lost", error=describe(exc), **self.fields)
            return
        metrics.count_spend(self.item.task, evidence)

    async def _store_started(self) -> None:
        try:
            await self._store(self._started(),
                              msg_id_for_event(self.item.id, "started", self.item.attempt, self.delivery))
        except persist.PromiseCancelled:  # cancelled between our check and this write
            self.stop(CANCELLED)

    async def _store(self, event: Started | Succeeded | AttemptFailed, msg_id: str) -> None:
        if self.window is not None:
            await self.window.join()
        await persist.store(self.js, event, msg_id, unless_cancelled=True)

    async def _ack(self) -> None:
        if self.window is not None:
            await self.window.join()
        await ack(self.msg, **self.fields)


async def ack(msg: Msg, **fields: object) -> None:
    """Ack and wait for the server to confirm; a lost ack only costs a skipped redelivery."""
    for delay in (0.1, 0.5, 1.0, None):
        try:
            await msg.ack()
            return
        except MsgAlreadyAckdError:
            return
        except Exception as exc:
            if delay is None:
                # Redelivery will find the result in the log and ack then.
                logs.warning("ack.failed", error=describe(exc), **fields)
                return
            await asyncio.sleep(delay)
