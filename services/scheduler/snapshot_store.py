"""Where the scheduler keeps its projection snapshot, and when it takes one.

Every instance loads the snapshot at start (so a standby is hot sooner too) and
tails PROMISES after it; the leader stores a new one after enough events.  A
snapshot only saves time: one that is missing, unreadable, of another fold or
of another log is logged and ignored, and the whole log is replayed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import time
from collections.abc import Callable

from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from promises.projection import Projection
from schemas import subjects
from valor import metrics, objstore

from . import snapshot

log = logging.getLogger("valor.scheduler")

CHECK_EVERY = 1.0  # seconds between looks at whether a snapshot is due


class Snapshots:
    def __init__(self, js: JetStreamContext, every: int, min_interval: float, clock: Callable[[], float],
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.js = js
        self.every, self.min_interval = every, min_interval  # events (0: never), seconds
        self.clock = clock
        self.monotonic = monotonic
        self.log_created = ""  # PROMISES' creation time: which log the projection folds
        self.seq = 0  # last_seq of the newest snapshot loaded or stored
        self._stored_at = -math.inf  # monotonic

    async def load(self) -> Projection | None:
        """The stored projection when it belongs to the log as it stands, else None (replay it all)."""
        t0 = time.perf_counter()
        data, problem = None, None
        try:
            data = await objstore.get(self.js, subjects.SNAPSHOTS_BUCKET, snapshot.NAME)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never a reason not to start
            problem = exc
        read = time.perf_counter() - t0
        # Asked after the read: a snapshot stored meanwhile must not look past the log's end.
        info = await self.js.stream_info(subjects.PROMISES)
        self.log_created = str(info.created or "")
        if data is None and problem is None:
            log.info("no projection snapshot: replaying the whole log (%d events)", info.state.messages)
            return None
        try:
            if problem is not None:
                raise problem
            header = snapshot.read_header(data)
            if reason := snapshot.unusable(header, self.log_created, info.state.first_seq, info.state.last_seq):
                log.warning("projection snapshot ignored: %s; replaying the whole log", reason)
                return None
            _, state = snapshot.restore(data)
        except Exception as exc:
            log.warning("projection snapshot unusable (%s: %s); replaying the whole log", type(exc).__name__, exc)
            return None
        # The restored promises live as long as the process: moved out of the cyclic GC's sight, they
        # no longer cost a full collection (0.4-0.8 s at 250,000 promises) just as serving begins.
        gc.freeze()
        self.seq = header.last_seq
        _count(len(data), header.last_seq, load=time.perf_counter() - t0)
        log.info("projection snapshot loaded: seq %d, %d promises, %d bytes in %.2fs (read %.2fs); "
                 "replaying from seq %d", header.last_seq, header.promises, len(data), time.perf_counter() - t0,
                 read, header.last_seq + 1)
        return state

    async def store(self, state: Projection) -> int:
        """Store ``state`` as it is now; return the snapshot's size in bytes."""
        t0 = time.perf_counter()
        # Serialised without an await in between: one consistent point between two events.
        header, body = snapshot.freeze(state, self.log_created, self.clock())
        t1 = time.perf_counter()
        # Decisions go on meanwhile: compressing runs in a thread, and objstore keeps few chunks in flight.
        data = await asyncio.to_thread(snapshot.seal, header, body)
        t2 = time.perf_counter()
        await objstore.put(self.js, subjects.SNAPSHOTS_BUCKET, snapshot.NAME, data)
        t3 = time.perf_counter()
        self.seq = max(self.seq, header.last_seq)
        _count(len(data), header.last_seq, encode=t1 - t0, compress=t2 - t1, store=t3 - t2)
        log.info("projection snapshot stored: seq %d, %d promises, %d bytes (%d before compression), "
                 "encoded in %.2fs, compressed in %.2fs, stored in %.2fs", header.last_seq, header.promises,
                 len(data), len(body), t1 - t0, t2 - t1, t3 - t2)
        return len(data)

    async def run(self, state: Callable[[], Projection], leader: Callable[[], bool],
                  stopping: Callable[[], bool]) -> None:
        """While leader, store a snapshot whenever one is due."""
        while not stopping():  # a flag as well as cancel(): nats-py can swallow a CancelledError
            await asyncio.sleep(CHECK_EVERY)
            current = state()
            if not leader() or not snapshot.due(current.last_seq - self.seq, self.monotonic() - self._stored_at,
                                                self.every, self.min_interval):
                continue
            try:
                await self.store(current)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("projection snapshot not stored (%s: %s)", type(exc).__name__, exc)
            self._stored_at = self.monotonic()


def tail_after(seq: int) -> ConsumerConfig:
    """The tail's start: after the snapshot's sequence, or the whole log without one."""
    if seq:
        return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=seq + 1)
    return ConsumerConfig(deliver_policy=DeliverPolicy.ALL)


def resume_after(sub, seq: int) -> None:
    """Make an ordered consumer that restarts before its first message resume after ``seq``.

    nats-py restarts an ordered consumer (reconnect, missed heartbeats) after the
    last sequence it delivered, which is 0 until one arrives: after a snapshot
    that would be the whole log again.
    """
    jsi = getattr(getattr(sub, "_sub", None), "_jsi", None)  # nats-py 2.16's internals: checked, never assumed
    if seq and isinstance(getattr(jsi, "_sseq", None), int):
        jsi._sseq = max(jsi._sseq, seq)


def _count(size: int, seq: int, **seconds: float) -> None:
    metrics.SNAPSHOT_BYTES.set(size)
    metrics.SNAPSHOT_SEQ.set(seq)
    for step, value in seconds.items():
        metrics.SNAPSHOT_SECONDS.labels(step).set(value)
