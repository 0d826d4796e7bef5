"""The scheduler process: a thin shell around the projection and decisions.

It tails PROMISES into the projection (every instance, so a standby is hot),
holds or waits for the lease, and while leader it turns CHAT messages and
COMMANDS into events, calls ``decide`` and performs the effects.  It never
decides on a projection that lags behind what it published itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

import msgspec
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig

from schemas import subjects
from schemas.commands import (
    CommandReply,
    ExecutorHeartbeat,
    heartbeat_decoder,
)
from schemas.events import (
    AttemptFailed,
    RetryScheduled,
    decode_promise_event,
    encode,
)
from schemas.subjects import msg_id_for_event
from valor import bus, metrics
from valor.config import Config, load

from .capacity import slots_per_queue
from .decide import decide, resend_dispatched
from .effects import Dispatch, Effect, Publish
from .inputs import INPUTS_PER_ROUND, DeadLetter, Failed, Input, Later, Store, plan_round
from .lease import Lease
from .projection import Projection
from .readmodel import ReadIndex
from .reads import Applied, ReadService
from .snapshot_store import Snapshots, resume_after, tail_after

log = logging.getLogger("valor.scheduler")

# Bound on waiting for pipelined acks: a lost ack must not stall decisions forever.
PUBLISH_TIMEOUT = 10.0
# Room left in a work message for headers.
WORK_HEADROOM = 4096
# How often attempts dispatched but not started get their work item sent again.
RESEND_EVERY = 30.0


class Scheduler:
    def __init__(
        self,
        nc: Client,
        name: str | None = None,
        config: Config | None = None,
        lease_ttl: float = 5.0,  # used only when the lease bucket has no TTL
        heartbeat_ttl: float = 10.0,
        clock: Callable[[], float] = time.time,
        ack_wait: float = 10.0,
        snapshot_every: int = 50_000,  # events between snapshots; 0: never store one
        snapshot_interval: float = 30.0,  # seconds at least between two snapshots
        serve_reads: bool = True,  # answer valor-reads requests (decision 48)
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.name = name or f"scheduler-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.config = config or load()
        self.lease_ttl = lease_ttl
        self.heartbeat_ttl = heartbeat_ttl
        self.clock = clock
        self.ack_wait = ack_wait
        self.state = Projection()
        self.snapshots = Snapshots(self.js, snapshot_every, snapshot_interval, clock)
        self.executors: dict[str, ExecutorHeartbeat] = {}
        self.index = ReadIndex(self.state)
        self.applied = Applied()
        self.reads: ReadService | None = None
        self.serve_reads = serve_reads
        self.lease: Lease | None = None
        self.published_seq = 0  # highest PROMISES sequence we stored ourselves
        self.inbox: asyncio.Queue[tuple[str, Msg]] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # the decision loop waits, its last round found nothing to do
        self._tasks: list[asyncio.Task] = []
        self._leader_tasks: list[asyncio.Task] = []
        self._tail = None
        self._stopping = False
        self._resend_pending = False  # set on taking over and after a failed round
        self._decide_next = False  # inputs and decisions take turns
        self._resend_due = time.monotonic() + RESEND_EVERY

    # --- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        await bus.ensure_streams(self.js)
        self.state = await self.snapshots.load() or self.state  # then the tail: the events after it
        self.index, self.applied = ReadIndex(self.state), Applied(self.state.last_seq)
        self._tail = await self.js.subscribe(
            subjects.ALL_PROMISE_EVENTS, stream=subjects.PROMISES, cb=self._on_event,
            ordered_consumer=True, config=tail_after(self.state.last_seq), idle_heartbeat=1.0,
        )
        resume_after(self._tail, self.state.last_seq)
        if self.serve_reads:
            self.reads = ReadService(self.nc, self.index, self.applied, self.name, lambda: self.leader)
            await self.reads.start()
        kv = await self.js.key_value(subjects.LEASE_BUCKET)
        # The bucket's TTL is the lease length: renew well within it.
        self.lease_ttl = (await kv.status()).ttl or self.lease_ttl
        self.lease = Lease(kv, self.name)
        self._tasks = [
            asyncio.create_task(self._watch_executors(), name="executors"),
            asyncio.create_task(self._hold_lease(), name="lease"),
            asyncio.create_task(self._loop(), name="decide"),
            asyncio.create_task(self._gauges(), name="gauges"),
            # Only once caught up: a snapshot in the middle of the replay would be an old one.
            asyncio.create_task(self.snapshots.run(lambda: self.state, lambda: self.leader and self.caught_up(),
                                                   lambda: self._stopping), name="snapshots"),
        ]

    async def stop(self) -> None:
        self._stopping = True
        if self.reads is not None:
            with contextlib.suppress(Exception):
                await self.reads.stop()
        await self._step_down()
        tasks = self._tasks + self._leader_tasks
        for task in tasks:
            task.cancel()
        if tasks:
            # nats-py can swallow a cancellation inside a flush; never wait forever.
            await asyncio.wait(tasks, timeout=2.0)
        if self.lease:
            await self.lease.release()
        if self._tail:
            with contextlib.suppress(Exception):
                await self._tail.unsubscribe()

    @property
    def leader(self) -> bool:
        return bool(self.lease and self.lease.held)

    def caught_up(self) -> bool:
        return self.state.last_seq >= self.published_seq

    # --- inputs -----------------------------------------------------------------

    async def _on_event(self, msg: Msg) -> None:
        seq = bus.stream_sequence(msg)
        try:
            event = decode_promise_event(msg.data)
        except msgspec.DecodeError as exc:
            # The log is never rewritten: keep a copy with the reason and move on.
            self.state.last_seq = max(self.state.last_seq, seq)
            self.state.ignored += 1
            metrics.EVENTS_REJECTED.labels(subjects.PROMISES).inc()
            if self.leader:
                with contextlib.suppress(Exception):
                    await bus.dead_letter(self.js, msg, "promise", f"undecodable event: {exc}")
        else:
            applied = self.state.apply(event, seq)
            (metrics.EVENTS_APPLIED if applied else metrics.EVENTS_IGNORED).inc()
            if applied:
                self.index.touch(event)
        self.applied.advance(self.state.last_seq)
        self._wake.set()

    async def _watch_executors(self) -> None:
        kv = await self.js.key_value(subjects.EXECUTORS_BUCKET)
        while not self._stopping:
            try:
                watcher = await kv.watchall()
                async for entry in watcher:
                    if entry is None:
                        continue
                    if entry.operation in ("DEL", "PURGE") or not entry.value:
                        self.executors.pop(entry.key, None)
                    else:
                        with contextlib.suppress(msgspec.DecodeError):
                            self.executors[entry.key] = heartbeat_decoder.decode(entry.value)
                    self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("executor watch failed (%s); retrying", exc)
                await asyncio.sleep(1)

    def capacity(self, now: float) -> dict[str, int]:
        return slots_per_queue(self.executors.values(), now, self.heartbeat_ttl)

    # --- leadership ---------------------------------------------------------------

    async def _hold_lease(self) -> None:
        renewed = 0.0  # monotonic time of the last successful create or renew
        while not self._stopping:
            try:
                if self.lease.held:
                    if await self.lease.renew():
                        renewed = time.monotonic()
                    else:  # someone else holds it: stop acting at once
                        await self._step_down()
                elif await self.lease.acquire():
                    renewed = time.monotonic()
                    try:
                        await self._take_over()
                    except Exception:
                        # Held without COMMANDS and CHAT pulled, the lease would be renewed while
                        # nothing is ever created again: give it back, and try for it anew.
                        await self.lease.release()
                        raise
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # NATS away or a KV leader election: the lease is still ours until
                # its TTL could have run out, so keep trying until then, not longer.
                log.warning("lease check failed: %s", exc)
                if self.lease.held and time.monotonic() - renewed > self.lease_ttl * 0.75:
                    self.lease.revision = None
                    await self._step_down()
            await asyncio.sleep(self.lease_ttl / 4 if self.lease.held else self.lease_ttl / 5)

    async def _take_over(self) -> None:
        info = await self.js.stream_info(subjects.PROMISES)
        self.published_seq = max(self.published_seq, info.state.last_seq)
        log.info("%s is the active scheduler (log at seq %d)", self.name, info.state.last_seq)
        self._leader_tasks = [
            asyncio.create_task(self._pull(subjects.COMMANDS, "cmd.*", "commands"), name="commands"),
            asyncio.create_task(self._pull(subjects.CHAT, "chat.*.in", "chat"), name="chat"),
        ]
        self._resend_pending = True
        self._wake.set()

    async def _step_down(self) -> None:
        for task in self._leader_tasks:
            task.cancel()
        self._leader_tasks = []
        while not self.inbox.empty():
            _, msg = self.inbox.get_nowait()
            with contextlib.suppress(Exception):
                await msg.nak()

    async def _pull(self, stream: str, filter_subject: str, kind: str) -> None:
        config = ConsumerConfig(durable_name="scheduler", ack_policy=AckPolicy.EXPLICIT, ack_wait=self.ack_wait,
                                max_ack_pending=1000, filter_subject=filter_subject)
        sub = None
        idle = 0  # fetches in a row that timed out
        # A flag as well as cancel(): nats-py can swallow a CancelledError mid-request.
        while self.leader and not self._stopping:
            try:
                if sub is None:
                    sub = await self.js.pull_subscribe(filter_subject, durable="scheduler", stream=stream, config=config)
                # Keep the inbox short: what is fetched must be handled before its ack_wait.
                if self.inbox.qsize() > 200:
                    await asyncio.sleep(0.05)
                    continue
                msgs = await sub.fetch(100, timeout=1.0)
                idle = 0
            except asyncio.CancelledError:
                raise
            except TimeoutError:
                idle += 1
                if idle % 10 == 0 and await self._stalled(stream):
                    sub = await self._drop(sub)
                continue
            except Exception as exc:
                log.warning("fetch from %s failed (%s); retrying", stream, exc)
                sub = await self._drop(sub)
                await asyncio.sleep(0.5)
                continue
            for msg in msgs:
                self.inbox.put_nowait((kind, msg))
            self._wake.set()

    async def _stalled(self, stream: str) -> bool:
        """Fetches keep timing out while messages wait: the pull subscription went stale
        (seen after a reconnect to another node), so it is made anew."""
        with contextlib.suppress(Exception):
            info = await self.js.consumer_info(stream, "scheduler")
            return bool(info.num_pending) and not info.num_ack_pending
        return False

    @staticmethod
    async def _drop(sub):
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return None

    # --- drain: run until quiet ----------------------------------------------------

    async def drain(self, timeout: float = 10.0) -> None:
        """Return once this scheduler has nothing left to do now (burst mode, as arq's workers have).

        Quiet means: it leads, every event stored on PROMISES is folded, every
        command and chat message stored is handled (acked), and its last decision
        round found nothing to do.  Timers (a retry's backoff, a ``not_before``)
        may still be due later.  The real loop does the work; this only watches it,
        so tests wait for the scheduler instead of sleeping.
        """
        deadline = time.monotonic() + timeout
        while (busy := await self.busy()) is not None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"scheduler {self.name} not quiet after {timeout}s: {busy}")
            await asyncio.sleep(0.02)

    async def busy(self) -> str | None:
        """What this scheduler still has to do now, or None when it is quiet (``drain``)."""
        if not self.leader or not self._leader_tasks:
            return "not leading"
        if not self._idle_now() or not self.inbox.empty():
            return "deciding"
        last = (await self.js.stream_info(subjects.PROMISES)).state.last_seq
        if self.state.last_seq < last:
            return f"folded PROMISES to {self.state.last_seq} of {last}"
        for stream in (subjects.COMMANDS, subjects.CHAT):
            try:
                info = await self.js.consumer_info(stream, "scheduler")
            except nats.js.errors.NotFoundError:  # not pulled yet: quiet only if nothing waits
                if (await self.js.stream_info(stream)).state.messages:
                    return f"{stream} not pulled yet"
                continue
            if info.num_pending or info.num_ack_pending:
                return f"{stream}: {info.num_pending} to pull, {info.num_ack_pending} unacked"
        return None if self._idle_now() else "deciding"  # woken while it looked

    def _idle_now(self) -> bool:
        return self._idle.is_set() and not self._wake.is_set()

    # --- the decision loop ------------------------------------------------------

    async def _loop(self) -> None:
        wake_at: float | None = None
        while not self._stopping:
            if not self._wake.is_set():
                self._idle.set()
            timeout = None if wake_at is None else max(0.0, wake_at - self.clock())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout if timeout is None else min(timeout, 1.0))
            self._idle.clear()
            self._wake.clear()
            wake_at = None
            # Not before the take-over has finished: until then `published_seq` may not
            # cover the log yet, and a decision could rest on a projection that lags it.
            if not self.leader or not self._leader_tasks or not self.caught_up():
                continue
            try:
                wake_at = await self._round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("decision round failed: %s", exc)
                # Events may be stored while their work items were not: hand them out again.
                self._resend_pending = True
                await asyncio.sleep(0.5)
                self._wake.set()

    async def _round(self) -> float | None:
        """Handle a batch of inputs or one batch of decisions; return when to look again.

        Inputs and decisions take turns, so a flood of commands or caught-up chat
        messages never holds back the work that is already ready.
        """
        now = self.clock()
        if time.monotonic() >= self._resend_due:
            # A work item can be lost between `dispatched` and WORK (NATS away at that
            # moment); re-sending now and then is harmless: WORK drops duplicate ids.
            self._resend_pending, self._resend_due = True, time.monotonic() + RESEND_EVERY
        if self._resend_pending:
            await self.perform(resend_dispatched(self.state))
            self._resend_pending = False
        if not self.inbox.empty() and not self._decide_next:
            self._decide_next = True
            inputs = [self.inbox.get_nowait() for _ in range(min(INPUTS_PER_ROUND, self.inbox.qsize()))]
            await self._handle_inputs(inputs, now)
            self._wake.set()
            return None
        self._decide_next = False
        decision = decide(self.state, now, self.capacity(now), self.config)
        if decision.effects:
            await self.perform(decision.effects)
        if decision.effects or not self.inbox.empty():
            self._wake.set()
            return None
        return decision.wake_at

    async def _handle_inputs(self, inputs: list[tuple[str, Msg]], now: float) -> None:
        """Perform what ``inputs.plan_round`` decided for a round of commands and chat messages.

        The stores of all inputs are in flight together: one round trip, not one per input.
        """
        outcomes = plan_round(self.state, [Input("chat" if kind == "chat" else "command", msg.data)
                                           for kind, msg in inputs], now, self.config, self.nc.max_payload)
        failure: BaseException | None = None
        stores: list[tuple[Msg, Store]] = []
        for (kind, msg), outcome in zip(inputs, outcomes, strict=True):
            match outcome:
                case Store():
                    stores.append((msg, outcome))
                case Later():
                    await msg.nak(delay=0.1)
                case DeadLetter():
                    if outcome.undecodable:
                        metrics.EVENTS_REJECTED.labels(subjects.CHAT if kind == "chat" else subjects.COMMANDS).inc()
                    try:
                        await bus.dead_letter(self.js, msg, outcome.origin, outcome.reason)
                        if outcome.reply_to:  # the caller is waiting: tell it why, now
                            await self.nc.publish(outcome.reply_to,
                                                  encode(CommandReply(ok=False, error=outcome.reason)))
                        await msg.ack()
                    except Exception as exc:  # not parked: it comes back, the others keep their round
                        failure = failure or exc
                        with contextlib.suppress(Exception):
                            await msg.nak(delay=0.5)
                case Failed():
                    log.warning("%s input %s not handled: %s", kind, msg.subject, outcome.error)
                    failure = failure or outcome.error
                    with contextlib.suppress(Exception):
                        await msg.nak(delay=0.5)
        stored = await asyncio.gather(*(self.perform(p.effects) for _, p in stores), return_exceptions=True)
        for (msg, p), result in zip(stores, stored, strict=True):
            if isinstance(result, BaseException):
                # Not stored (NATS away, or another scheduler took the id): it comes back,
                # and a caller still waiting gets the answer from the retry.
                failure = failure or result
                with contextlib.suppress(Exception):
                    await msg.nak(delay=0.5)
                continue
            if p.reply_to:
                await self.nc.publish(p.reply_to, encode(p.reply))
            await msg.ack()
        if failure is not None:
            raise failure

    async def perform(self, effects: list[Effect]) -> None:
        """Store events (in order), then hand out the work they announce."""
        publishes = [e for e in effects if isinstance(e, Publish)]
        if any(p.new_subject for p in publishes):
            # New ids: the batch is stored all or none, so a refused id guard (another
            # scheduler took an id) leaves no half-created plan behind.
            await self._publish_atomically(publishes)
        else:
            futures = [await self.js.publish_async(bus.event_subject(p.event), encode(p.event),
                                                   headers={bus.MSG_ID: p.msg_id}) for p in publishes]
            for ack in await asyncio.wait_for(asyncio.gather(*futures), timeout=PUBLISH_TIMEOUT):
                self.published_seq = max(self.published_seq, ack.seq)
        dispatches = [d for d in effects if isinstance(d, Dispatch)]
        work, too_big = [], []
        for d in dispatches:
            payload = encode(d.item)
            if len(payload) > self.nc.max_payload - WORK_HEADROOM:
                too_big.append(self._uncarriable(d, len(payload)))
                continue
            work.append(await self.js.publish_async(subjects.work(d.queue), payload, headers={bus.MSG_ID: d.msg_id}))
        await asyncio.wait_for(asyncio.gather(*work), timeout=PUBLISH_TIMEOUT)
        if too_big:
            await self.perform(too_big)
        self._count(publishes, dispatches)

    def _uncarriable(self, d: Dispatch, size: int) -> Publish:
        """A work item NATS cannot carry (huge input or dependency results) fails for good,
        with a reason, instead of being retried forever or blocking the others."""
        error = (f"the work item is {size:,} bytes (input plus the results of its dependencies); "
                 f"NATS carries at most {self.nc.max_payload:,}")
        event = AttemptFailed(at=self.clock(), id=d.item.id, attempt=d.item.attempt, error=error, retryable=False)
        return Publish(event, msg_id_for_event(d.item.id, "attempt_failed", d.item.attempt))

    async def _publish_atomically(self, publishes: list[Publish]) -> None:
        for start in range(0, len(publishes), bus.BATCH_LIMIT):  # a plan past the cap goes in parts
            chunk = publishes[start:start + bus.BATCH_LIMIT]
            items = [(bus.event_subject(p.event), encode(p.event),
                      {bus.MSG_ID: p.msg_id, **({bus.EXPECTED_LAST_SUBJECT_SEQ: "0"} if p.new_subject else {})})
                     for p in chunk]
            try:
                ack = await bus.publish_atomic(self.nc, items, timeout=PUBLISH_TIMEOUT)
            except bus.DuplicateInBatch:
                # Part of it was stored before a crash: one by one, the duplicates are absorbed.
                for p in chunk:
                    ack = await bus.publish_event(self.js, p.event, p.msg_id, expect_new_subject=p.new_subject)
                    self.published_seq = max(self.published_seq, ack.seq)
                continue
            self.published_seq = max(self.published_seq, ack.seq)

    def _count(self, publishes: list[Publish], dispatches: list[Dispatch]) -> None:
        now = self.clock()
        for d in dispatches:
            p = self.state.promises.get(d.item.id)
            metrics.DISPATCHED.labels(d.queue, d.item.task).inc()
            if p is not None:
                metrics.DISPATCH_LATENCY.labels(d.queue).observe(max(0.0, now - self.state.ready_since(p)))
        for pub in publishes:
            if isinstance(pub.event, RetryScheduled) and pub.event.id in self.state.promises:
                metrics.RETRIES.labels(self.state.promises[pub.event.id].spec.task).inc()

    # --- health and gauges --------------------------------------------------------

    def health(self) -> dict:
        return {"ok": self.nc.is_connected, "scheduler": self.name, "leader": self.leader,
                "last_seq": self.state.last_seq, "caught_up": self.caught_up(),
                "promises": len(self.state.promises)}

    async def _gauges(self, every: float = 5.0) -> None:
        """Refresh the gauges a scrape reads: states, queues, consumer lag."""
        while not self._stopping:
            metrics.LEADER.set(1 if self.leader else 0)
            for state, n in self.state.counts().items():
                metrics.PROMISES.labels(state).set(n)
            for queue in set(self.state.ready) | set(self.state.in_flight):
                metrics.QUEUE_READY.labels(queue).set(self.state.ready_count(queue))
                metrics.QUEUE_IN_FLIGHT.labels(queue).set(self.state.in_flight[queue])
            if self.leader:
                for stream in (subjects.CHAT, subjects.COMMANDS, subjects.WORK):
                    with contextlib.suppress(Exception):
                        for info in await self.js.consumers_info(stream):
                            metrics.CONSUMER_PENDING.labels(stream, info.name).set(info.num_pending or 0)
                            metrics.CONSUMER_ACK_PENDING.labels(stream, info.name).set(info.num_ack_pending or 0)
            await asyncio.sleep(every)

