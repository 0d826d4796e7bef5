"""Rows of ``promises`` and ``attempts`` from events, by the scheduler's own fold.

Pure.  A promise's state depends on its own events and on whether its direct
dependencies succeeded, so folding the events of the promises to refresh plus
their direct dependencies gives the same states as `valor show` / `valor list`
(which fold the whole log).  :func:`fold_set` says which promises that is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from promises.projection import Projection, Promise
from promises.states import State
from schemas.events import (
    AttemptFailed,
    Cancelled,
    Dispatched,
    Failed,
    PromiseEvent,
    Started,
    Succeeded,
)


@dataclass
class Attempt:
    promise_id: int
    attempt: int
    queue: str | None = None
    executor: str | None = None
    deliveries: int = 0
    dispatched_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    outcome: str | None = None
    error: str | None = None
    retryable: bool | None = None
    duration: float | None = None

    def end(self, outcome: str, at: float, error: str | None, duration: float = 0.0,
            retryable: bool | None = None) -> None:
        if self.outcome is not None:  # the first result of an attempt stands
            return
        self.outcome, self.finished_at, self.error, self.retryable = outcome, at, error, retryable
        if duration:
            self.duration = duration
        elif self.started_at is not None:
            self.duration = max(0.0, at - self.started_at)


def fold_set(refresh: set[int], depends_on: dict[int, Iterable[int]]) -> set[int]:
    """The promises whose events must be folded to compute ``refresh`` correctly."""
    out = set(refresh)
    for pid in refresh:
        out.update(depends_on.get(pid, ()))
    return out


def derive(events: Iterable[tuple[int, PromiseEvent]], refresh: set[int]) -> tuple[list[tuple], list[tuple]]:
    """(promise rows, attempt rows) for the promises in ``refresh``; events in log order."""
    state = Projection()
    attempts: dict[tuple[int, int], Attempt] = {}
    first: dict[int, dict[str, float]] = {}
    last_seq: dict[int, int] = {}
    for seq, e in events:
        applied = state.apply(e, seq)
        last_seq[e.id] = seq
        match e:
            case Dispatched():
                a = attempts.setdefault((e.id, e.attempt), Attempt(e.id, e.attempt))
                a.queue = e.queue
                if a.dispatched_at is None:
                    a.dispatched_at = e.at
                first.setdefault(e.id, {}).setdefault("dispatched", e.at)
            case Started():
                a = attempts.setdefault((e.id, e.attempt), Attempt(e.id, e.attempt))
                a.executor, a.deliveries = e.executor, max(a.deliveries, e.delivery)
                if a.started_at is None:
                    a.started_at = e.at
                first.setdefault(e.id, {}).setdefault("started", e.at)
            case Succeeded():
                if (e.id, e.attempt) in attempts:
                    attempts[e.id, e.attempt].end(State.SUCCEEDED, e.at, None, e.duration)
            case AttemptFailed():
                if (e.id, e.attempt) in attempts:
                    attempts[e.id, e.attempt].end(State.FAILED, e.at, e.error, e.duration, e.retryable)
            case Failed() | Cancelled() if applied:
                p = state.promises[e.id]
                outcome = State.FAILED if isinstance(e, Failed) else State.CANCELLED
                if (e.id, p.attempt) in attempts:  # it ended the attempt in flight, if any
                    attempts[e.id, p.attempt].end(outcome, e.at, e.reason)
    promise_rows = [
        promise_row(state.promises[pid], first.get(pid, {}), last_seq.get(pid, 0))
        for pid in sorted(refresh) if pid in state.promises
    ]
    attempt_rows = [attempt_row(a, state.promises[a.promise_id])
                    for key, a in sorted(attempts.items()) if key[0] in refresh and a.promise_id in state.promises]
    return promise_rows, attempt_rows


def _json(value) -> str | None:
    return None if value is None else msgspec.json.encode(value).decode()


def _since(end: float | None, start: float | None) -> float | None:
    return None if end is None or start is None else max(0.0, end - start)


def promise_row(p: Promise, first: dict[str, float], last_seq: int) -> tuple:
    s = p.spec
    started = first.get("started")
    return (p.id, s.task, s.title, p.state, p.attempt, s.priority, s.queue, s.concurrency_key, s.chat_id,
            s.message_id, s.parent_id, list(s.depends_on), s.retry_of, p.executor or None, s.at or None,
            first.get("dispatched"), started, p.finished_at, _since(p.finished_at, started),
            _since(p.finished_at, s.at or None), p.error, p.cancelled_by, _json(s.input), _json(p.result),
            last_seq)


def attempt_row(a: Attempt, p: Promise) -> tuple:
    outcome = a.outcome or (State.RUNNING if a.started_at is not None else State.DISPATCHED)
    return (a.promise_id, a.attempt, p.spec.task, a.queue, a.executor or None, a.deliveries or None,
            a.dispatched_at, a.started_at, a.finished_at, outcome, a.error, a.retryable, a.duration)
