"""Promise state as a fold over the PROMISES log.

``Projection.apply`` is pure and total: no I/O, no clock, and an event that
does not fit the current state is counted in ``ignored`` instead of raising.
Replaying the same log always yields the same state.  Besides each promise's
facts it keeps the indexes the decisions need (ready lists, timers, in-flight
counts); those are derived from the same events, so they rebuild too.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence
from typing import Any

import msgspec
from sortedcontainers import SortedList

from schemas.commands import asks_for_anything
from schemas.events import (
    Approved,
    AttemptFailed,
    AttemptStopped,
    BudgetAdjusted,
    Cancelled,
    Created,
    Dispatched,
    Evidence,
    Failed,
    InputEdited,
    InstructionsAdded,
    InstructionsDelivered,
    NoticeFailed,
    NoticeIntended,
    Notified,
    Progress,
    PromiseEvent,
    RequestDeleted,
    RetryScheduled,
    ScheduleCreated,
    ScheduleDeleted,
    SchedulePaused,
    ScheduleResumed,
    Spawned,
    Started,
    Succeeded,
    TicksSkipped,
    TokenUsage,
)

from .states import IN_FLIGHT, TERMINAL, State, public

Group = int | None  # a chat id, how ready promises are grouped for fair turns; None for promises without a chat

# The notices that are messages Valor sent (a reaction's record names the user's own message).
SENT_NOTICES = ("status", "terminal", "final")

def sender_of(input: Any) -> int | None:
    """The user who sent a respond promise's message (its input is the ``message.received``)."""
    if isinstance(input, dict) and isinstance(input.get("sender_id"), int) and input["sender_id"]:
        return input["sender_id"]
    sender = getattr(input, "sender_id", None)
    return sender if isinstance(sender, int) and sender else None


def origin_of(spec: Created) -> int | None:
    """The promise whose sender a promise's spend counts against: a respond promise's own, a step's parent's."""
    return spec.id if spec.task == "respond" else spec.parent_id or None


class Spent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What one attempt spent, from its end event's evidence (decision 47)."""

    attempt: int
    at: float
    cost_usd: float | None = None
    tokens: TokenUsage | None = None


class Promise(msgspec.Struct, kw_only=True):
    spec: Created
    status: State = State.WAITING
    attempt: int = 0  # the current attempt (last dispatched), 0 before the first
    pending_deps: int = 0
    not_before: float | None = None
    executor: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    result: Any = None
    evidence: Evidence | None = None  # what the last attempt that ended did (Claude Code types)
    error: str | None = None  # last attempt's error, or the terminal reason
    retryable: bool = True
    cancelled_by: str | None = None
    cause_id: int | None = None
    progress: str | None = None
    turn: int = 0  # the projection's dispatch count at this promise's last dispatch (fair turns)
    children: dict[str, int] | None = None
    spawn_error: str | None = None
    notices: list[str] = []
    # Valor's messages about it in its own chat (Telegram ids): what a reply to one of them is about.
    sent: list[int] = []
    instructions: list[InstructionsAdded] = []  # added while it was open: every later attempt gets them
    spent: list[Spent] = []  # one per attempt that recorded its spend, in log order
    budget: list[BudgetAdjusted] = []  # budgets raised or reset by the command it carried (decision 49)
    refused: NoticeFailed | None = None  # its chat refused its notice for good: closed since (decision 52)

    @property
    def cost_usd(self) -> float:
        return sum(s.cost_usd or 0.0 for s in self.spent)

    @property
    def id(self) -> int:
        return self.spec.id

    @property
    def state(self) -> State:
        return public(self.status)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


class Schedule(msgspec.Struct, kw_only=True):
    """A recurring promise (decision 51) and how far its ticks are settled."""

    spec: ScheduleCreated
    paused: bool = False
    deleted: bool = False
    settled: float = 0.0  # every tick up to here ran or was skipped: only later ones are due
    last_run: int | None = None  # the promise of its latest tick that ran
    skipped: int = 0  # ticks skipped since that run, told with the next one
    runs: int = 0

    @property
    def id(self) -> int:
        return self.spec.id

    @property
    def active(self) -> bool:
        return not (self.paused or self.deleted)


class Projection:
    def __init__(self) -> None:
        self.promises: dict[int, Promise] = {}
        self.schedules: dict[int, Schedule] = {}
        self.dependents: dict[int, list[int]] = {}
        self.by_message: dict[tuple[int, int], int] = {}
        self.by_request: dict[str, dict[int, int]] = {}
        self.max_id = 0
        self.last_seq = 0
        self.applied = 0
        self.ignored = 0
        # Indexes for decisions.
        self.ready: dict[str, dict[Group, SortedList]] = {}  # queue -> chat -> (priority, id)
        self.served: dict[str, dict[Group, int]] = {}  # queue -> chat -> turn of its last dispatch
        self.dispatches = 0  # dispatched events applied: the latest turn
        # chat -> its respond promises whose effects are not all in the log yet (decision 42)
        self.unsettled: dict[int, SortedList] = {}
        self.timed = SortedList()  # (not_before, id): delayed or retrying
        self.deadlines = SortedList()  # (deadline, id, attempt) of running attempts
        self.in_flight: Counter[str] = Counter()  # queue -> dispatched + running
        self.key_in_flight: Counter[str] = Counter()  # concurrency key -> running
        self.awaiting = SortedList()  # (approve_by, id): held promises that expire unanswered
        self.needs_decision: set[int] = set()
        # Spend by whom it counts against, so a budget check reads the chat's and the sender's, not every
        # promise (decision 79): (at, id, index in ``Promise.spent``) per chat, per user and per origin
        # (``origin_of``), and the promises carrying each (scope, target)'s budget changes.  A charge's user
        # is its origin's sender: the origin's edit or late creation moves its charges (``_refile``), so
        # they are kept per origin only while it is missing or may be edited (``_editable``).
        # Sorted lists, not SortedList: spend comes in time order, so an add is an append (``_file``).
        self.spend_by_chat: dict[int, list[tuple[float, int, int]]] = {}
        self.spend_by_user: dict[int, list[tuple[float, int, int]]] = {}
        self.spend_by_origin: dict[int, set[tuple[float, int, int]]] = {}
        self.budget_changes: dict[tuple[str, int], set[int]] = {}

    # --- the fold ---------------------------------------------------------------

    def apply(self, event: PromiseEvent, seq: int = 0) -> bool:
        """Fold one event in; return False (and count it) when it does not fit."""
        if seq:
            if seq <= self.last_seq:
                self.ignored += 1
                return False
            self.last_seq = seq
        handler = _HANDLERS.get(type(event))
        ok = handler(self, event) if handler else False
        if ok:
            self.applied += 1
        else:
            self.ignored += 1
        return ok

    def _created(self, e: Created) -> bool:
        if e.id in self.promises or e.id in self.schedules or e.id <= 0:
            return False
        p = Promise(spec=e, not_before=e.not_before)
        self.promises[e.id] = p
        self.max_id = max(self.max_id, e.id)
        if e.schedule_id is not None and (sched := self.schedules.get(e.schedule_id)) is not None:
            _ran(sched, e)
        if e.request_id is not None:
            self.by_request.setdefault(e.request_id, {})[e.request_index] = e.id
        if e.task == "respond" and e.chat_id is not None and e.message_id is not None:
            self.by_message.setdefault((e.chat_id, e.message_id), e.id)
        doomed = False
        for dep in e.depends_on:
            self.dependents.setdefault(dep, []).append(e.id)
            parent = self.promises.get(dep)
            if parent is None or parent.status in (State.FAILED, State.CANCELLED):
                doomed = True
            if parent is None or parent.status != State.SUCCEEDED:
                p.pending_deps += 1
        if e.awaits_approval is not None:
            p.status = State.AWAITING
            if e.approve_by is not None:
                self.awaiting.add((e.approve_by, e.id))
        if doomed:
            self.needs_decision.add(e.id)
        elif p.pending_deps == 0 and p.status != State.AWAITING:
            self._enqueue(p)
        self._settle_answer(p)
        self._refile(e.id, None, sender_of(e.input))
        return True

    def _approved(self, e: Approved) -> bool:
        p = self.promises.get(e.id)
        if p is None or p.status != State.AWAITING:
            return False
        self._dequeue(p)
        p.status = State.WAITING
        if p.pending_deps == 0 and p.id not in self.needs_decision:
            self._enqueue(p)
        return True

    def _dispatched(self, e: Dispatched) -> bool:
        p = self.promises.get(e.id)
        # Dependencies are not re-checked: the scheduler dispatched only after they
        # succeeded, and a reader folding one promise's events alone has no parents.
        if p is None or p.status not in (State.QUEUED, State.RETRYING, State.WAITING) or e.attempt != p.attempt + 1:
            return False
        self._dequeue(p)
        p.status, p.attempt = State.DISPATCHED, e.attempt
        self.spend_by_origin.pop(p.id, None)  # its sender is settled: nothing to move any more
        self.dispatches += 1
        p.turn = self.dispatches
        self.served.setdefault(p.spec.queue, {})[p.spec.chat_id] = p.turn
        self.in_flight[p.spec.queue] += 1
        if p.spec.concurrency_key:
            self.key_in_flight[p.spec.concurrency_key] += 1
        return True

    def _started(self, e: Started) -> bool:
        p = self.promises.get(e.id)
        if p is None or p.status not in IN_FLIGHT or e.attempt != p.attempt:
            return False
        self._drop_deadline(p)
        p.status, p.executor, p.started_at = State.RUNNING, e.executor, e.at
        if p.spec.timeout:
            self.deadlines.add((e.at + p.spec.timeout, p.id, p.attempt))
        return True

    def _progress(self, e: Progress) -> bool:
        p = self.promises.get(e.id)
        if p is None or p.status not in IN_FLIGHT or e.attempt != p.attempt:
            return False
        p.progress = e.text
        return True

    def _succeeded(self, e: Succeeded) -> bool:
        p = self.promises.get(e.id)
        if p is None or p.status not in IN_FLIGHT or e.attempt != p.attempt:
            return False
        self._leave_flight(p)
        p.status, p.result, p.finished_at, p.error = State.SUCCEEDED, e.result, e.at, None
        self.spend_by_origin.pop(p.id, None)
        if e.evidence is not None:
            p.evidence = e.evidence
        self._charge(p, e)
        for child_id in self.dependents.get(p.id, ()):
            child = self.promises.get(child_id)
            if child is not None and not child.terminal:
                child.pending_deps -= 1
                # Only a child still waiting: one already dispatched (decision 16) stays in flight.
                if child.pending_deps == 0 and child.id not in self.needs_decision and child.status == State.WAITING:
                    self._enqueue(child)
        if p.spec.task == "respond" and asks_for_anything(e.result):
            self.needs_decision.add(p.id)
        self._settle_answer(p)
        return True

    def _attempt_failed(self, e: AttemptFailed) -> bool:
        p = self.promises.get(e.id)
        if p is None or p.status not in IN_FLIGHT or e.attempt != p.attempt:
            return False
        self._leave_flight(p)
        p.status, p.error, p.retryable = State.FAILING, e.error, e.retryable
        if e.evidence is not None:
            p.evidence = e.evidence
        self._charge(p, e)
        self.needs_decision.add(p.id)
        return True

    def _attempt_stopped(self, e: AttemptStopped) -> bool:
        """A cancelled attempt's spend: only its evidence matters, the promise already ended."""
        p = self.promises.get(e.id)
        if p is None or e.attempt > p.attempt or any(s.attempt == e.attempt for s in p.spent):
            return False
        if e.evidence is not None:
            p.evidence = e.evidence
        self._charge(p, e)
        return True

    def _budget_adjusted(self, e: BudgetAdjusted) -> bool:
        p = self.promises.get(e.id)
        if p is None or any(b.request_id == e.request_id for b in p.budget):
            return False
        p.budget = [*p.budget, e]
        self.budget_changes.setdefault((e.scope, e.target), set()).add(p.id)
        return True

    def _retry_scheduled(self, e: RetryScheduled) -> bool:
        p = self.promises.get(e.id)
        if p is None or e.next_attempt != p.attempt + 1 or p.status not in (State.FAILING, State.RETRYING):
            return False
        self._dequeue(p)
        p.status, p.not_before = State.RETRYING, e.not_before
        self.timed.add((e.not_before, p.id))
        self.needs_decision.discard(p.id)
        return True

    def _failed(self, e: Failed) -> bool:
        return self._end(e.id, State.FAILED, e.reason, e.at)

    def _cancelled(self, e: Cancelled) -> bool:
        ok = self._end(e.id, State.CANCELLED, e.reason, e.at)
        if ok:
            p = self.promises[e.id]
            p.cancelled_by, p.cause_id = e.by, e.cause_id
        return ok

    def _spawned(self, e: Spawned) -> bool:
        p = self.promises.get(e.id)
        if p is None or p.children is not None or p.spawn_error is not None:
            return False
        p.children, p.spawn_error = dict(e.children), e.error
        if p.status == State.SUCCEEDED:
            self.needs_decision.discard(p.id)
        self._settle_answer(p)
        return True

    def _instructions_added(self, e: InstructionsAdded) -> bool:
        p = self.promises.get(e.id)
        if p is None or p.terminal or any(i.request_id == e.request_id for i in p.instructions):
            return False
        p.instructions = [*p.instructions, e]
        return True

    def _input_edited(self, e: InputEdited) -> bool:
        """An edit before the first dispatch is the input from now on (decision 50); a later one changes nothing."""
        p = self.promises.get(e.id)
        if p is None or not e.applied or not _editable(p):
            return False
        was = sender_of(p.spec.input)
        p.spec = msgspec.structs.replace(p.spec, input=e.input, title=e.title or p.spec.title)
        self._refile(p.id, was, sender_of(e.input))
        return True

    def _instructions_delivered(self, e: InstructionsDelivered) -> bool:
        return e.id in self.promises  # the executor's fact about an attempt; nothing here depends on it

    def _notice_intended(self, e: NoticeIntended) -> bool:
        return e.id in self.promises  # the notifier's fact; nothing here depends on it

    def _notice_failed(self, e: NoticeFailed) -> bool:
        """Kept for ``valor status``: a chat Telegram refused (not the ``unsent`` ones that only follow)."""
        p = self.promises.get(e.id)
        if p is None:
            return False
        if not e.unsent and p.refused is None:
            p.refused = e
        return True

    def _notified(self, e: Notified) -> bool:
        p = self.promises.get(e.id)
        if p is None:
            return False
        p.notices.append(e.kind)
        if e.kind in SENT_NOTICES and e.chat_id == p.spec.chat_id and e.telegram_message_id is not None:
            p.sent.append(e.telegram_message_id)
        return True

    # --- schedules (decision 51) ---------------------------------------------------

    def _schedule_created(self, e: ScheduleCreated) -> bool:
        if e.id in self.promises or e.id in self.schedules or e.id <= 0:
            return False
        self.schedules[e.id] = Schedule(spec=e, settled=e.at)
        self.max_id = max(self.max_id, e.id)
        if e.request_id is not None:
            self.by_request.setdefault(e.request_id, {})[0] = e.id
        return True

    def _schedule_paused(self, e: SchedulePaused) -> bool:
        s = self.schedules.get(e.id)
        if s is None or not s.active:
            return False
        s.paused = True
        return True

    def _schedule_resumed(self, e: ScheduleResumed) -> bool:
        s = self.schedules.get(e.id)
        if s is None or s.deleted or not s.paused:
            return False
        # Ticks that passed while paused are not owed: the next one after the resume runs.
        s.paused, s.settled = False, max(s.settled, e.at)
        return True

    def _schedule_deleted(self, e: ScheduleDeleted) -> bool:
        s = self.schedules.get(e.id)
        if s is None or s.deleted:
            return False
        s.deleted = True
        return True

    def _ticks_skipped(self, e: TicksSkipped) -> bool:
        s = self.schedules.get(e.id)
        if s is None or e.last <= s.settled:
            return False
        s.settled, s.skipped = e.last, s.skipped + e.count
        return True

    # --- index upkeep -----------------------------------------------------------

    def _charge(self, p: Promise, e: Succeeded | AttemptFailed | AttemptStopped) -> None:
        evidence = e.evidence
        if evidence is None or (evidence.cost_usd is None and evidence.tokens is None):
            return
        p.spent = [*p.spent, Spent(attempt=e.attempt, at=e.at, cost_usd=evidence.cost_usd, tokens=evidence.tokens)]
        entry = (e.at, p.id, len(p.spent) - 1)
        if p.spec.chat_id is not None:
            _file(self.spend_by_chat.setdefault(p.spec.chat_id, []), entry)
        if (origin := origin_of(p.spec)) is not None:
            o = self.promises.get(origin)
            if o is None or _editable(o):
                self.spend_by_origin.setdefault(origin, set()).add(entry)
            if o is not None and (user := sender_of(o.spec.input)) is not None:
                _file(self.spend_by_user.setdefault(user, []), entry)

    def _refile(self, origin: int, was: int | None, user: int | None) -> None:
        """The charges counted against ``origin``'s sender move from ``was`` to ``user``."""
        entries = self.spend_by_origin.get(origin)
        if was == user or not entries:
            return
        if was is not None:
            old = self.spend_by_user[was]
            for entry in entries:
                del old[bisect.bisect_left(old, entry)]
            if not old:
                del self.spend_by_user[was]
        if user is not None:
            new = self.spend_by_user.setdefault(user, [])
            for entry in entries:
                _file(new, entry)

    def _end(self, promise_id: int, status: State, reason: str, at: float) -> bool:
        p = self.promises.get(promise_id)
        if p is None or p.terminal:
            return False
        self._leave_flight(p)
        self._dequeue(p)
        p.status, p.error, p.finished_at = status, reason, at
        self.spend_by_origin.pop(p.id, None)
        self.needs_decision.discard(p.id)
        if any(not self.promises[c].terminal for c in self.dependents.get(p.id, ()) if c in self.promises):
            self.needs_decision.add(p.id)  # its dependents must be cancelled
        for dep in p.spec.depends_on:
            self._settle_cascade(dep)
        self._settle_answer(p)
        return True

    def _settle_cascade(self, parent_id: int) -> None:
        """A failed parent stops needing a decision once all its dependents ended."""
        if parent_id not in self.needs_decision:
            return
        parent = self.promises.get(parent_id)
        if parent is None or parent.status not in (State.FAILED, State.CANCELLED):
            return
        if all(self.promises[c].terminal for c in self.dependents.get(parent_id, ()) if c in self.promises):
            self.needs_decision.discard(parent_id)

    def _enqueue(self, p: Promise) -> None:
        if p.not_before is not None:
            p.status = State.WAITING
            self.timed.add((p.not_before, p.id))
        else:
            p.status = State.QUEUED
            self.ready.setdefault(p.spec.queue, {}).setdefault(p.spec.chat_id, SortedList()).add(
                (p.spec.priority, p.id))

    def _dequeue(self, p: Promise) -> None:
        if p.status == State.AWAITING and p.spec.approve_by is not None:
            self.awaiting.discard((p.spec.approve_by, p.id))
        groups = self.ready.get(p.spec.queue) or {}
        ready = groups.get(p.spec.chat_id)
        if ready is not None:
            ready.discard((p.spec.priority, p.id))
            if not ready:  # decisions walk the chats with ready promises, not every chat ever seen
                del groups[p.spec.chat_id]
        if p.not_before is not None:
            self.timed.discard((p.not_before, p.id))

    def _answering(self, p: Promise) -> bool:
        """A chat's respond promise until its effects are in the log: it ended, and
        the promises and commands of its result were created (``spawned``) or need none."""
        if p.spec.task != "respond" or p.spec.chat_id is None:
            return False
        if not p.terminal:
            return True
        return (p.status == State.SUCCEEDED and p.children is None and p.spawn_error is None
                and p.id in self.needs_decision)

    def _settle_answer(self, p: Promise) -> None:
        if p.spec.chat_id is None:
            return
        order = self.unsettled.get(p.spec.chat_id)
        listed = order is not None and p.id in order
        if self._answering(p):
            if not listed:
                self.unsettled.setdefault(p.spec.chat_id, SortedList()).add(p.id)
        elif order is not None and listed:
            order.discard(p.id)
            if not order:
                del self.unsettled[p.spec.chat_id]

    def _leave_flight(self, p: Promise) -> None:
        if p.status in IN_FLIGHT:
            self.in_flight[p.spec.queue] -= 1
            if p.spec.concurrency_key:
                self.key_in_flight[p.spec.concurrency_key] -= 1
        self._drop_deadline(p)

    def _drop_deadline(self, p: Promise) -> None:
        if p.spec.timeout and p.started_at is not None and p.status == State.RUNNING:
            self.deadlines.discard((p.started_at + p.spec.timeout, p.id, p.attempt))

    # --- restoring (a snapshot) ----------------------------------------------------

    @classmethod
    def restored(cls, promises: list[Promise], needs_decision: list[int], *,
                 max_id: int, last_seq: int, applied: int, ignored: int,
                 schedules: Sequence[Schedule] = ()) -> Projection:
        """The projection whose promises (in creation order) and counters are these.

        Every index is derived again from the promises, stating as membership
        rules what the upkeep above leaves in it; tests/scheduler/test_snapshot.py
        pins that the result equals the fold.  ``needs_decision`` is given, not
        derived: a doomed promise stays in it whatever its status says.
        """
        state = cls()
        state.max_id, state.last_seq, state.applied, state.ignored = max_id, last_seq, applied, ignored
        state.needs_decision = needs = set(needs_decision)
        for sched in schedules:
            state.schedules[sched.id] = sched
            if sched.spec.request_id is not None:
                state.by_request.setdefault(sched.spec.request_id, {})[0] = sched.id
        ready: dict[str, dict[Group, list]] = {}
        unsettled: dict[int, list] = {}
        timed, deadlines, awaiting = [], [], []
        by_chat: dict[int, list] = {}
        origins: dict[int, list] = {}
        for p in promises:
            state.promises[p.id] = p
            spec = p.spec
            if p.spent:
                entries = [(spent.at, p.id, i) for i, spent in enumerate(p.spent)]
                if spec.chat_id is not None:
                    by_chat.setdefault(spec.chat_id, []).extend(entries)
                if (origin := origin_of(spec)) is not None:
                    origins.setdefault(origin, []).extend(entries)
            for a in p.budget:
                state.budget_changes.setdefault((a.scope, a.target), set()).add(p.id)
            for dep in spec.depends_on:
                state.dependents.setdefault(dep, []).append(p.id)
            if spec.request_id is not None:
                state.by_request.setdefault(spec.request_id, {})[spec.request_index] = p.id
            if spec.task == "respond" and spec.chat_id is not None and spec.message_id is not None:
                state.by_message.setdefault((spec.chat_id, spec.message_id), p.id)
            if p.turn:
                served = state.served.setdefault(spec.queue, {})
                served[spec.chat_id] = max(served.get(spec.chat_id, 0), p.turn)
                state.dispatches = max(state.dispatches, p.turn)
            if state._answering(p) and spec.chat_id is not None:  # _answering: a chat's, so always
                unsettled.setdefault(spec.chat_id, []).append(p.id)
            status = p.status
            if status == State.QUEUED:
                ready.setdefault(spec.queue, {}).setdefault(spec.chat_id, []).append((spec.priority, p.id))
            elif status == State.RETRYING or (  # a waiting promise is timed once it was enqueued
                    status == State.WAITING and p.not_before is not None and p.pending_deps == 0 and p.id not in needs):
                timed.append((p.not_before, p.id))
            elif status == State.AWAITING and spec.approve_by is not None:
                awaiting.append((spec.approve_by, p.id))
            elif status in IN_FLIGHT:
                state.in_flight[spec.queue] += 1
                if spec.concurrency_key:
                    state.key_in_flight[spec.concurrency_key] += 1
                if status == State.RUNNING and spec.timeout and p.started_at is not None:
                    deadlines.append((p.started_at + spec.timeout, p.id, p.attempt))
        state.ready = {queue: {chat: SortedList(items) for chat, items in groups.items()}
                       for queue, groups in ready.items()}
        state.unsettled = {chat: SortedList(ids) for chat, ids in unsettled.items()}
        state.timed, state.deadlines, state.awaiting = SortedList(timed), SortedList(deadlines), SortedList(awaiting)
        by_user: dict[int, list] = {}
        for origin, entries in origins.items():
            o = state.promises.get(origin)
            if o is None or _editable(o):
                state.spend_by_origin[origin] = set(entries)
            if o is not None and (user := sender_of(o.spec.input)) is not None:
                by_user.setdefault(user, []).extend(entries)
        state.spend_by_chat = {chat: sorted(entries) for chat, entries in by_chat.items()}
        state.spend_by_user = {user: sorted(entries) for user, entries in by_user.items()}
        return state

    # --- queries ----------------------------------------------------------------

    def ready_since(self, p: Promise) -> float:
        """When the promise could first have started: created, not_before, parents done."""
        times = [p.spec.at, p.not_before or 0.0]
        times += [self.promises[d].finished_at or 0.0 for d in p.spec.depends_on if d in self.promises]
        return max(times)

    def ready_count(self, queue: str) -> int:
        return sum(len(items) for items in self.ready.get(queue, {}).values())

    def answers_next(self, p: Promise) -> bool:
        """Whether ``p`` may run as far as its chat's order goes: a chat's respond
        promises run one at a time, each once the ones before it settled (decision 42)."""
        if p.spec.task != "respond" or p.spec.chat_id is None:
            return True
        order = self.unsettled.get(p.spec.chat_id)
        return not order or order[0] == p.id

    def counts(self) -> Counter[str]:
        return Counter(p.state for p in self.promises.values())

    def open_dependents(self, promise_id: int) -> list[int]:
        return [c for c in self.dependents.get(promise_id, ()) if c in self.promises and not self.promises[c].terminal]


def _file(entries: list, entry: tuple) -> None:
    """Into a sorted list: appended when it is the latest, as spend almost always is."""
    if not entries or entries[-1] <= entry:
        entries.append(entry)
    else:
        bisect.insort(entries, entry)


def _editable(p: Promise) -> bool:
    """Whether an edit may still change the promise's input, so its sender (``_input_edited``)."""
    return p.attempt == 0 and not p.terminal


def _ran(sched: Schedule, e: Created) -> None:
    """A tick's promise settles its schedule up to that tick (and the skips it told)."""
    if e.tick is not None:
        sched.settled = max(sched.settled, e.tick)
    sched.last_run, sched.skipped, sched.runs = e.id, max(0, sched.skipped - e.skipped), sched.runs + 1


_HANDLERS = {
    Created: Projection._created,
    Approved: Projection._approved,
    BudgetAdjusted: Projection._budget_adjusted,
    Dispatched: Projection._dispatched,
    Started: Projection._started,
    Progress: Projection._progress,
    Succeeded: Projection._succeeded,
    AttemptFailed: Projection._attempt_failed,
    AttemptStopped: Projection._attempt_stopped,
    RetryScheduled: Projection._retry_scheduled,
    Failed: Projection._failed,
    Cancelled: Projection._cancelled,
    Spawned: Projection._spawned,
    Notified: Projection._notified,
    NoticeIntended: Projection._notice_intended,
    NoticeFailed: Projection._notice_failed,
    InstructionsAdded: Projection._instructions_added,
    InstructionsDelivered: Projection._instructions_delivered,
    InputEdited: Projection._input_edited,
    RequestDeleted: Projection._instructions_delivered,  # a fact for /why; its cancel (if any) is its own event
    ScheduleCreated: Projection._schedule_created,
    SchedulePaused: Projection._schedule_paused,
    ScheduleResumed: Projection._schedule_resumed,
    ScheduleDeleted: Projection._schedule_deleted,
    TicksSkipped: Projection._ticks_skipped,
}
