"""What the scheduler does next, as a pure function of the projection and time.

``decide(state, now, capacity)`` returns effects (events to store, attempts to
hand out) and when to look again.  It never mutates the projection: the shell
publishes the effects, the events come back through the log, ``apply`` folds
them in, and only then is ``decide`` called again.  So a crash anywhere leaves
a log from which the next scheduler decides the same things.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import NamedTuple

from schemas.commands import WorkItem
from schemas.events import AttemptFailed, Cancelled, Dispatched, Failed, RetryScheduled
from schemas.subjects import msg_id_for_event, msg_id_for_work
from valor.config import DEFAULT, Config

from . import approval, schedules
from .backoff import retry_delay
from .effects import Dispatch, Effect, Publish, ids_taken
from .fairness import Group, turns
from .intake import spawn_children
from .projection import CANCELLED, DISPATCHED, FAILED, FAILING, RUNNING, SUCCEEDED, Projection, Promise


class Decision(NamedTuple):
    effects: list[Effect]
    wake_at: float | None  # next time something becomes due, if nothing else happens


# An executor enforces the timeout itself; the scheduler steps in only when it
# stays silent this long past the deadline (it hung or vanished with the work).
TIMEOUT_GRACE = 5.0


def decide(
    state: Projection,
    now: float,
    capacity: Mapping[str, int],
    config: Config = DEFAULT,
    timeout_grace: float = TIMEOUT_GRACE,
) -> Decision:
    effects: list[Effect] = []
    ended: set[int] = set()
    for pid in sorted(state.needs_decision):
        effects += _settle(state, state.promises[pid], now, ended, config, effects)
    effects += approval.expire(state, now, ended)
    effects += _expire(state, now, timeout_grace, ended)
    effects += _dispatch(state, now, capacity, ended, config)
    effects += schedules.fire(state, now, config, state.max_id + 1 + ids_taken(effects))
    return Decision(effects, _wake_at(state, now, timeout_grace))


def _settle(state, p: Promise, now, ended, config, so_far) -> list[Effect]:
    if p.id in ended:
        return []
    if p.status == FAILING:
        return [_retry_or_fail(p, now)]
    if p.status in (FAILED, CANCELLED):
        return _cancel_dependents(state, p, now, ended)
    if p.status == SUCCEEDED and p.children is None and p.spawn_error is None:
        next_id = state.max_id + 1 + ids_taken(so_far)
        return spawn_children(state, p.id, now, config, next_id)
    if not p.terminal:  # created after one of its dependencies had already ended badly
        for dep in p.spec.depends_on:
            parent = state.promises.get(dep)
            if parent is None or parent.status in (FAILED, CANCELLED):
                ended.add(p.id)
                return [_cancel(p.id, now, dep, _because(dep, parent))]
    return []


def _retry_or_fail(p: Promise, now: float) -> Publish:
    s = p.spec
    if p.retryable and p.attempt < s.max_attempts:
        delay = retry_delay(p.id, p.attempt, s.backoff, s.backoff_factor, s.backoff_max, s.jitter)
        event = RetryScheduled(at=now, id=p.id, next_attempt=p.attempt + 1, not_before=now + delay, delay=delay)
        return Publish(event, msg_id_for_event(p.id, "retry_scheduled", p.attempt + 1))
    why = "not retryable" if not p.retryable else f"after {p.attempt} attempt{'s' if p.attempt > 1 else ''}"
    return Publish(Failed(at=now, id=p.id, reason=f"{p.error} ({why})", attempt=p.attempt),
                   msg_id_for_event(p.id, "failed"))


def _because(dep: int, parent: Promise | None) -> str:
    if parent is None:
        return f"dependency #{dep} does not exist"
    if parent.status == FAILED:
        return f"dependency #{dep} failed: {parent.error}"
    return f"dependency #{dep} was cancelled: {parent.error}"


def _cancel(pid: int, now: float, cause: int, reason: str) -> Publish:
    return Publish(Cancelled(at=now, id=pid, reason=reason, by="scheduler", cause_id=cause),
                   msg_id_for_event(pid, "cancelled"))


def _cancel_dependents(state: Projection, root: Promise, now: float, ended: set[int]) -> list[Effect]:
    """Every open promise downstream ends cancelled, naming the promise that ended first."""
    if root.status == CANCELLED and root.cause_id is not None and root.cause_id in state.promises:
        origin = state.promises[root.cause_id]  # name the original cause, not the messenger
        if origin.status not in (FAILED, CANCELLED):
            origin = root
    else:
        origin = root
    reason = _because(origin.id, origin)
    effects: list[Effect] = []
    stack = list(state.dependents.get(root.id, ()))
    while stack:
        cid = stack.pop()
        child = state.promises.get(cid)
        if child is None or child.terminal or cid in ended:
            continue
        ended.add(cid)
        effects.append(_cancel(cid, now, origin.id, reason))
        stack.extend(state.dependents.get(cid, ()))
    return effects


def _expire(state: Projection, now: float, grace: float, ended: set[int]) -> list[Effect]:
    effects: list[Effect] = []
    for _deadline, pid, attempt in state.deadlines.irange(maximum=(now - grace, math.inf, math.inf)):
        p = state.promises[pid]
        if p.status != RUNNING or p.attempt != attempt or pid in ended:
            continue
        error = f"timed out after {p.spec.timeout:g}s (no result from executor {p.executor or '?'})"
        effects.append(Publish(AttemptFailed(at=now, id=pid, attempt=attempt, error=error, retryable=True),
                               msg_id_for_event(pid, "attempt_failed", attempt)))
    return effects


def _candidates(state: Projection, queue: str, due: dict[Group, list[tuple[int, int]]]) -> Iterator[int]:
    """Ready promises of a queue (and those whose time came) in priority order, chats taking turns."""
    ready = state.ready.get(queue, {})
    groups = {chat: heapq.merge(ready.get(chat, ()), sorted(due.get(chat, ())))
              for chat in set(ready) | set(due)}
    return turns(groups, state.served.get(queue, {}))


def _dispatch(state: Projection, now: float, capacity: Mapping[str, int], ended: set[int],
              config: Config) -> list[Effect]:
    due: dict[str, dict[Group, list[tuple[int, int]]]] = {}
    for _, pid in state.timed.irange(maximum=(now, math.inf)):
        p = state.promises[pid]
        if p.pending_deps == 0 and not p.terminal:
            due.setdefault(p.spec.queue, {}).setdefault(p.spec.chat_id, []).append((p.spec.priority, pid))
    effects: list[Effect] = []
    keys: Counter[str] = Counter()
    for queue in sorted(set(state.ready) | set(due)):
        slots = capacity.get(queue, 0)
        if slots <= 0:  # nobody serves it: keep its promises ready here, in priority order
            continue
        free = slots + math.ceil(slots * config.queue(queue).dispatch_ahead) - state.in_flight[queue]
        if free <= 0:
            continue
        for pid in _candidates(state, queue, due.get(queue, {})):
            if free <= 0:
                break
            p = state.promises[pid]
            if pid in ended or not state.answers_next(p):
                continue
            key = p.spec.concurrency_key
            if key and state.key_in_flight[key] + keys[key] >= p.spec.concurrency_limit:
                continue
            if key:
                keys[key] += 1
            free -= 1
            effects += _dispatch_one(state, p, now)
    return effects


def _dispatch_one(state: Projection, p: Promise, now: float) -> list[Effect]:
    attempt = p.attempt + 1
    return [
        Publish(Dispatched(at=now, id=p.id, attempt=attempt, queue=p.spec.queue),
                msg_id_for_event(p.id, "dispatched", attempt)),
        _work(state, p, attempt),
    ]


def _work(state: Projection, p: Promise, attempt: int) -> Dispatch:
    s = p.spec
    deps = {str(d): state.promises[d].result for d in s.depends_on}
    item = WorkItem(id=p.id, attempt=attempt, task=s.task, title=s.title, input=s.input, deps=deps,
                    timeout=s.timeout, chat_id=s.chat_id, message_id=s.message_id, resume_session=s.resume_session,
                    max_cost=s.max_cost, instructions=p.instructions)
    return Dispatch(s.queue, item, msg_id_for_work(p.id, attempt))


def resend_dispatched(state: Projection) -> list[Effect]:
    """Work items for attempts dispatched but not started: a new leader re-sends them.

    If the previous leader died between storing ``dispatched`` and publishing the
    work, nobody would ever run it; the WORK stream's duplicate window absorbs
    the copies that did arrive.
    """
    return [_work(state, p, p.attempt) for p in state.promises.values() if p.status == DISPATCHED]


def _wake_at(state: Projection, now: float, grace: float) -> float | None:
    times = []
    later = state.timed.irange(minimum=(now, math.inf))
    first = next(iter(later), None)
    if first is not None:
        times.append(first[0])
    deadlines = state.deadlines.irange(minimum=(now - grace, math.inf, math.inf))
    first_deadline = next(iter(deadlines), None)
    if first_deadline is not None:
        times.append(first_deadline[0] + grace)
    if (expiry := approval.next_expiry(state, now)) is not None:
        times.append(expiry)
    if (tick := schedules.wake_at(state)) is not None:
        times.append(tick)
    return min(times) if times else None
