"""One sync: new stream messages -> rows, in batches; then re-fold the touched promises.

Each round reads up to ``batch`` messages per stream with the file closed,
then opens the file, checks that the cursors did not move meanwhile (another
sync), inserts, advances the cursors in the same transaction, and closes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from schemas import subjects
from schemas.events import decode_promise_event

from . import store
from .derive import derive, fold_set
from .read import read_after
from .rows import ROW_BUILDERS
from .tables import STREAM_TABLES

log = logging.getLogger("valor.analytics")

STREAMS = (subjects.PROMISES, subjects.CHAT, subjects.DLQ)


class CursorMoved(Exception):
    """Another sync wrote the file between our read and our write: read again."""


@dataclass
class SyncReport:
    copied: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STREAMS, 0))
    last_seq: dict[str, int] = field(default_factory=dict)
    promises: int = 0  # promise rows refreshed
    rebuilt: list[str] = field(default_factory=list)  # streams started over (recreated or purged)
    seconds: float = 0.0

    def line(self, db: Path) -> str:
        parts = ", ".join(f"{s} +{self.copied[s]} (seq {self.last_seq.get(s, 0)})" for s in STREAMS)
        extra = f"; started over: {', '.join(self.rebuilt)}" if self.rebuilt else ""
        return f"synced {parts}; {self.promises} promises refreshed in {self.seconds:.2f}s -> {db}{extra}"


async def sync(nc: Client, db: str | Path, batch: int = 5000, lock_wait: float = 5.0,
               clock: Callable[[], float] = time.time) -> SyncReport:
    path = Path(db)
    js = nc.jetstream()
    report = SyncReport()
    start = time.perf_counter()
    async with store.writing(path, lock_wait) as con:
        known = store.cursors(con)
    while True:
        reads, resets = {}, []
        for stream in STREAMS:
            try:
                info = await js.stream_info(stream)
            except NotFoundError:
                continue
            after = known.get(stream, 0)
            if info.state.last_seq < after:  # the stream was recreated: our copy is of another log
                resets.append(stream)
                after = 0
            reads[stream] = await read_after(js, stream, after, info.state.last_seq, batch)
        if not resets and not any(reads.values()):
            break
        try:
            async with store.writing(path, lock_wait) as con:
                if store.cursors(con) != known:
                    raise CursorMoved
                report.promises += write(con, reads, resets, clock())
                known = store.cursors(con)
        except CursorMoved:
            async with store.writing(path, lock_wait) as con:
                known = store.cursors(con)
            continue
        for stream, msgs in reads.items():
            report.copied[stream] += len(msgs)
        report.rebuilt += resets
        if all(len(msgs) < batch for msgs in reads.values()):
            break
    report.last_seq = dict(known)
    report.seconds = time.perf_counter() - start
    return report


def write(con, reads: dict, resets: list[str], now: float) -> int:
    """Insert one round; returns the number of promise rows refreshed."""
    for stream in resets:
        store.wipe(con, [STREAM_TABLES[stream]] + (["promises", "attempts"] if stream == subjects.PROMISES else []))
        store.set_cursor(con, stream, 0, 0, now)
    touched: set[int] = set()
    for stream, msgs in reads.items():
        rows = [r for r in map(ROW_BUILDERS[stream], msgs) if r is not None]
        store.insert(con, STREAM_TABLES[stream], rows)
        if msgs:
            store.set_cursor(con, stream, msgs[-1].seq, len(rows), now)
        if stream == subjects.PROMISES:
            touched.update(row[2] for row in rows if row[2] is not None)
    return refresh(con, touched) if touched else 0


def refresh(con, touched: set[int]) -> int:
    """Re-fold the touched promises and the dependents whose readiness they decide."""
    ids = list(touched)
    dependents = {r[0] for r in con.execute(
        "SELECT id FROM promises WHERE list_has_any(depends_on, ?::BIGINT[])", [ids]).fetchall()}
    refresh_ids = touched | dependents
    deps = dict(con.execute(
        "SELECT promise_id, CAST(json_extract(data, '$.depends_on') AS BIGINT[]) FROM events "
        "WHERE type = 'created' AND promise_id IN (SELECT unnest(?::BIGINT[]))", [list(refresh_ids)]).fetchall())
    fold_ids = fold_set(refresh_ids, {k: v or [] for k, v in deps.items()})
    rows = con.execute(
        "SELECT seq, CAST(data AS VARCHAR) FROM events WHERE type <> 'undecodable' "
        "AND promise_id IN (SELECT unnest(?::BIGINT[])) ORDER BY seq", [list(fold_ids)]).fetchall()
    events = []
    for seq, data in rows:
        try:
            events.append((seq, decode_promise_event(data.encode())))
        except msgspec.DecodeError:  # written by a newer Valor with a stricter reader? skip like the fold
            continue
    promise_rows, attempt_rows = derive(events, refresh_ids)
    store.delete_ids(con, "promises", "id", list(refresh_ids))
    store.delete_ids(con, "attempts", "promise_id", list(refresh_ids))
    store.insert(con, "promises", promise_rows)
    store.insert(con, "attempts", attempt_rows)
    return len(promise_rows)


async def follow(nc: Client, db: str | Path, every: float | None = None,
                 report: Callable[[str], None] = print, lock_wait: float = 5.0) -> SyncReport:
    """Sync once (``every`` None), or every ``every`` seconds until cancelled.

    Between syncs the file is closed.  In the loop a locked file or a NATS
    hiccup is reported and the next round tries again; copying resumes from
    the cursors, so nothing is lost or copied twice.
    """
    while True:
        try:
            result = await sync(nc, db, lock_wait=lock_wait)
            report(result.line(Path(db)))
        except store.Locked as exc:
            if every is None:
                raise
            report(f"skipped a sync: {exc}")
        except (TimeoutError, NotFoundError, nats.errors.Error) as exc:
            if every is None or isinstance(exc, nats.errors.ConnectionClosedError):
                raise
            report(f"skipped a sync: NATS did not answer ({str(exc) or type(exc).__name__})")
        if every is None:
            return result
        await asyncio.sleep(every)
