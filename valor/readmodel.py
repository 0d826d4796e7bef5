"""The reads the scheduler serves (decision 48): queries, answers and their indexes.

Pure: the scheduler's shell (``services/scheduler/reads.py``) feeds every applied event to ``ReadIndex.touch``
and turns requests into calls of ``answer``.  The indexes (promises by public
state and by chat) are derived from the projection alone, so an index built
from a restored snapshot equals one kept up to date event by event; a query
costs what it returns, not the size of the log.
"""

from __future__ import annotations

import heapq
from typing import Literal

import msgspec

from promises.projection import Projection, Promise, Schedule
from promises.states import State
from schemas.events import BudgetAdjusted, Created, InputEdited, NoticeFailed, Notified, PromiseEvent
from valor import budget, spend

ENDPOINTS = ("promise", "promises", "chat", "status")
# A chat answer's bounds (decision 75): its newest open work promises and its newest work promises.
CHAT_OPEN = 50
CHAT_RECENT = 30
CHAT_NAMED = 20  # the ids a message names that are answered (any number in its text may be one)
SUBJECT_PREFIX = "valor.read"  # endpoint subjects: valor.read.<endpoint>
SERVICE = "valor-reads"


def subject(endpoint: str) -> str:
    return f"{SUBJECT_PREFIX}.{endpoint}"


# --- the wire ------------------------------------------------------------------------


class PromiseQuery(msgspec.Struct, kw_only=True):
    id: int


class PromisesQuery(msgspec.Struct, kw_only=True):
    state: str | None = None  # a public state (Promise.state)
    chat_id: int | None = None
    type: str | None = None  # spec.task
    ids: list[int] | None = None  # only these (``valor wait`` asks for all its ids at once)
    limit: int = 0  # the newest ``limit`` of the matches (0: all), answered oldest first


class ChatQuery(msgspec.Struct, kw_only=True):
    """What one message of a chat can be about (decision 75): bounded whatever the chat's age."""

    chat_id: int
    about: list[int] = []  # the promise ids the message names: each with its relatives
    reply_to: int | None = None  # the Valor message it replies to: the promise that message is about
    # ``spend``: the answer also sums the chat's spend at ``now`` and, with ``user_id``, that user's
    # in every chat (read from ``ReadIndex.by_sender``, decision 78), and where each of ``budgets`` stands
    # (``/usage`` and ``/budget``): asked only then.
    spend: bool = False
    user_id: int | None = None
    now: float = 0.0
    budgets: list[budget.Budget] = []


class ChatSpend(msgspec.Struct, kw_only=True):
    """``/usage`` and ``/budget``'s figures, summed where the log is (decision 75): totals, not charges."""

    today: spend.Total  # the chat's, today and this month (UTC)
    month: spend.Total
    by_type: dict[str, float] = {}  # the chat's this month
    top: list[tuple[int, float]] = []  # its costliest promises this month
    user_today: float = 0.0  # the user's in every chat
    user_month: float = 0.0
    user_chats: int = 0  # the chats the user spent in this month
    standings: list[budget.Standing] = []  # each of the query's budgets


class StatusQuery(msgspec.Struct, kw_only=True):
    pass


class Answer(msgspec.Struct, kw_only=True):
    """Every answer: the projection's sequence it reflects, and which scheduler gave it."""

    seq: int = 0
    by: str = ""
    promises: list[Promise] = []
    # promise -> its dependents' ids, for the promises answered (and, for ``promise``, their relatives)
    dependents: dict[int, list[int]] = {}
    counts: dict[str, int] = {}
    leader: bool = False
    schedules: list[Schedule] = []  # ``chat``: the chat's schedules not deleted (decision 51)
    spend: ChatSpend | None = None  # ``chat`` asked with ``spend``
    # ``status``: every task type and chat a promise names, for the web page's filters
    types: list[str] = []
    chats: list[int] = []
    unreachable: dict[int, str] = {}  # ``status``: chats that refused Valor and wrote nothing since -> the refusal
    # ``chat``: how many of the chat's work promises (not its respond ones) are open and in all; ``counts``
    # then holds them by state.  The promises answered are bounded (decision 75), these totals are not.
    open_total: int = 0
    work_total: int = 0


QUERIES: dict[str, type[msgspec.Struct]] = {
    "promise": PromiseQuery, "promises": PromisesQuery, "chat": ChatQuery, "status": StatusQuery}
answer_decoder = msgspec.json.Decoder(Answer)

Endpoint = Literal["promise", "promises", "chat", "status"]


# --- the indexes ---------------------------------------------------------------------


class ReadIndex:
    """Promise ids by public state and by chat, kept beside a projection."""

    def __init__(self, state: Projection) -> None:
        self.state = state
        self.by_state: dict[str, set[int]] = {}  # a query names a state by its word
        self.where: dict[int, State] = {}
        self.by_chat: dict[int, list[int]] = {}  # creation order
        # A chat's work promises (not the agent's respond ones): in creation order, the open ones, by state.
        self.work: dict[int, list[int]] = {}
        self.open: dict[int, set[int]] = {}
        self.chat_counts: dict[int, dict[str, int]] = {}
        self.sent: dict[tuple[int, int], int] = {}  # (chat, a Valor message's id) -> the promise it is about
        self.types: set[str] = set()
        self.refusals: dict[int, NoticeFailed] = {}  # chat -> its latest refusal (decision 52)
        self.asked: dict[int, float] = {}  # chat -> when its latest request (a respond promise) was created
        # Where a user's spend may be (decision 78): ``spend.charges`` counts a respond promise's charges
        # and its steps' under the sender its input names.  An edited input leaves a promise under its old
        # sender too: ``user_spend`` keeps only the charges ``spend.charges`` gives the user.
        self.by_sender: dict[int, set[int]] = {}  # user -> promises whose input they sent
        self.by_parent: dict[int, list[int]] = {}  # promise -> the promises made under it (``spec.parent_id``)
        self.budget_changes: dict[int, set[int]] = {}  # user -> promises carrying a change to their budgets
        for pid, p in state.promises.items():
            self._place(pid)
            self._chat_facts(p)
            self._spend_facts(p)

    def _place(self, pid: int) -> None:
        p = self.state.promises.get(pid)
        if p is None:
            return
        now = p.state
        was = self.where.get(pid)
        if was == now:
            return
        chat = p.spec.chat_id
        work = chat is not None and p.spec.task != "respond"
        if was is None:
            self.types.add(p.spec.task)
            if chat is not None:
                self.by_chat.setdefault(chat, []).append(pid)
            if p.spec.parent_id is not None:
                self.by_parent.setdefault(p.spec.parent_id, []).append(pid)
            if work and chat is not None:
                self.work.setdefault(chat, []).append(pid)
        if was is not None:
            self.by_state[was].discard(pid)
        self.by_state.setdefault(now, set()).add(pid)
        self.where[pid] = now
        if work and chat is not None:
            counts = self.chat_counts.setdefault(chat, {})
            if was is not None:
                counts[was] -= 1
            counts[now] = counts.get(now, 0) + 1
            if p.terminal:
                self.open.get(chat, set()).discard(pid)
            else:
                self.open.setdefault(chat, set()).add(pid)

    def touch(self, event: PromiseEvent) -> None:
        """After ``event`` was applied: its promise's state, and its dependents' (a success readies them)."""
        pid = getattr(event, "id", 0)
        self._place(pid)
        if isinstance(event, NoticeFailed | Created | Notified) and (p := self.state.promises.get(pid)) is not None:
            self._chat_facts(p)
        if isinstance(event, Created | InputEdited | BudgetAdjusted) and (p := self.state.promises.get(pid)) is not None:
            self._spend_facts(p)
        for child in self.state.dependents.get(pid, ()):
            self._place(child)

    def counts(self) -> dict[str, int]:
        return {s: len(ids) for s, ids in self.by_state.items() if ids}

    def _chat_facts(self, p: Promise) -> None:
        if p.spec.chat_id is not None:
            for m in p.sent:
                self.sent[(p.spec.chat_id, m)] = p.id
        if (f := p.refused) is not None and f.at >= getattr(self.refusals.get(f.chat_id), "at", 0.0):
            self.refusals[f.chat_id] = f
        spec = p.spec
        if spec.task == "respond" and spec.chat_id is not None and spec.message_id:
            self.asked[spec.chat_id] = max(self.asked.get(spec.chat_id, 0.0), spec.at)

    def _spend_facts(self, p: Promise) -> None:
        if (user := spend.sender_of(p.spec.input)) is not None:
            self.by_sender.setdefault(user, set()).add(p.id)
        for a in p.budget:
            if a.scope == "user":
                self.budget_changes.setdefault(a.target, set()).add(p.id)

    def unreachable(self) -> dict[int, str]:
        """Chats Telegram refused whose people wrote nothing since (a request opens a chat again, as in the notifier)."""
        return {chat: f.reason for chat, f in sorted(self.refusals.items()) if self.asked.get(chat, 0.0) <= f.at}


# --- answering -----------------------------------------------------------------------


def _dependents(state: Projection, ids) -> dict[int, list[int]]:
    return {i: list(state.dependents[i]) for i in ids if state.dependents.get(i)}


def answer(index: ReadIndex, query: msgspec.Struct) -> Answer:
    """What the projection says to ``query``."""
    state = index.state
    match query:
        case PromiseQuery(id=pid):
            p = state.promises.get(pid)
            if p is None:
                return Answer(seq=state.last_seq)
            # Its dependencies, dependents and theirs: what ``valor show`` names beside it.
            children = state.dependents.get(pid, [])
            related = [pid, *p.spec.depends_on, *children,
                       *(g for c in children for g in state.dependents.get(c, ()))]
            ids = list(dict.fromkeys(i for i in related if i in state.promises))
            return Answer(seq=state.last_seq, promises=[state.promises[i] for i in ids],
                          dependents=_dependents(state, ids))
        case PromisesQuery():
            ids = _matching(index, query)
            promises = [state.promises[i] for i in ids]
            return Answer(seq=state.last_seq, promises=promises, dependents=_dependents(state, ids))
        case ChatQuery():
            return chat_answer(index, query)
        case StatusQuery():
            return Answer(seq=state.last_seq, counts=index.counts(), types=sorted(index.types),
                          chats=sorted(index.by_chat), unreachable=index.unreachable())
    raise ValueError(f"unknown query {type(query).__name__}")


def chat_answer(index: ReadIndex, q: ChatQuery) -> Answer:
    """What a message of the chat can be about (decision 75), bounded whatever the chat's age.

    The chat's newest ``CHAT_OPEN`` open work promises and newest ``CHAT_RECENT`` ones (with the
    totals by state), the promises the message names and the one the Valor message it replies to is
    about, each with its relatives (dependencies, dependents, the plan it is a step of and its steps):
    the cost and the size follow what the message is about, not the chat's life.
    """
    state = index.state
    chat = q.chat_id
    work = index.work.get(chat, [])
    open_ = index.open.get(chat, set())
    ids = [*heapq.nlargest(CHAT_OPEN, open_), *work[-CHAT_RECENT:]]
    focus = [i for i in q.about if (p := state.promises.get(i)) is not None and p.spec.chat_id == chat][:CHAT_NAMED]
    if q.reply_to is not None and (about := index.sent.get((chat, q.reply_to))) is not None:
        focus.append(about)
    for pid in focus:
        ids += _relatives(state, pid)
    ids = list(dict.fromkeys(i for i in ids if (p := state.promises.get(i)) is not None and p.spec.chat_id == chat))
    out = Answer(seq=state.last_seq, promises=[state.promises[i] for i in sorted(ids)],
                 dependents=_dependents(state, ids), schedules=chat_schedules(state, chat),
                 counts={s: n for s, n in sorted(index.chat_counts.get(chat, {}).items()) if n},
                 open_total=len(open_), work_total=len(work))
    if q.spend:
        out.spend = chat_spend(index, q)
    return out


def _relatives(state: Projection, pid: int) -> list[int]:
    """``pid``, its dependencies, dependents, steps, and the plan it is a step of with that plan's steps."""
    p = state.promises[pid]
    out = [pid, *p.spec.depends_on, *state.dependents.get(pid, ()), *(p.children or {}).values()]
    if p.spec.parent_id is not None and (parent := state.promises.get(p.spec.parent_id)) is not None:
        out += [parent.id, *(parent.children or {}).values()]
    return out


def chat_spend(index: ReadIndex, q: ChatQuery) -> ChatSpend:
    """The chat's spend at ``q.now``, ``q.user_id``'s in every chat, and where ``q.budgets`` stand."""
    since = spend.month_start(q.now)  # every figure is of today or this month
    chat = [index.state.promises[i] for i in index.by_chat.get(q.chat_id, [])]
    charges = {(c.promise_id, c.attempt): c for c in spend.charges(chat)}
    adjustments = {(a.id, a.request_id, a.period, a.scope): a for a in budget.adjustments(chat)}
    theirs, their_adjustments = user_spend(index, q.user_id) if q.user_id is not None else ([], [])
    charges.update({(c.promise_id, c.attempt): c for c in theirs})
    adjustments.update({(a.id, a.request_id, a.period, a.scope): a for a in their_adjustments})
    kept = [c for c in charges.values() if c.at >= since]
    changes = [a for a in adjustments.values() if a.at >= since]
    today = spend.totals(kept, since=spend.day_start(q.now), chat_id=q.chat_id)
    month = spend.totals(kept, since=since, chat_id=q.chat_id)
    out = ChatSpend(today=today.all, month=month.all, by_type={k: t.usd for k, t in month.by_type.items()},
                    top=[(pid, t.usd) for pid, t in month.top(5)],
                    standings=[budget.standing(b, kept, changes, q.now) for b in q.budgets])
    if q.user_id is not None:
        yours = spend.totals(kept, since=since, user_id=q.user_id)
        out.user_month, out.user_chats = yours.all.usd, len(yours.by_chat)
        out.user_today = spend.totals(kept, since=spend.day_start(q.now), user_id=q.user_id).all.usd
    return out


def chat_schedules(state: Projection, chat_id: int) -> list[Schedule]:
    """A scan: schedules are few, and a chat asks for them by hand."""
    return [s for _, s in sorted(state.schedules.items()) if s.spec.chat_id == chat_id and not s.deleted]


def user_spend(index: ReadIndex, user_id: int) -> tuple[list[spend.Charge], list[BudgetAdjusted]]:
    """What ``user_id`` spent in any chat, and every change an owner made to that user's budgets.

    What ``spend.charges`` and ``budget.adjustments`` of every promise keep for that user, by promise id
    then in log order, read from the promises that may hold them (decision 78): the cost is the user's.
    """
    promises = index.state.promises
    sent = index.by_sender.get(user_id, ())
    # With their steps, since ``charges`` finds a step's sender on its parent.  What ``charges`` gives
    # another user goes: a promise the user no longer sent (an edit), or one that is not a respond
    # promise (its charges are its own parent's sender's).
    ids = {*sent, *(c for o in sent for c in index.by_parent.get(o, ()))}
    charges = [c for c in spend.charges(promises[i] for i in sorted(ids)) if c.user_id == user_id]
    adjustments = [a for i in sorted(index.budget_changes.get(user_id, ())) for a in promises[i].budget
                   if (a.scope, a.target) == ("user", user_id)]
    return charges, adjustments


def _matching(index: ReadIndex, q: PromisesQuery) -> list[int]:
    state = index.state
    # Start from the smallest set the query names, then filter: the cost is what is answered.
    if q.ids is not None:
        ids = sorted({i for i in q.ids if i in state.promises})
    elif q.chat_id is not None:
        ids = index.by_chat.get(q.chat_id, [])
    elif q.state is not None:
        ids = sorted(index.by_state.get(q.state, ()))
    else:
        ids = sorted(state.promises)
    out = [i for i in ids if _fits(state.promises[i], q)]
    return out[-q.limit:] if q.limit > 0 else out


def _fits(p: Promise, q: PromisesQuery) -> bool:
    return ((q.state is None or p.state == q.state) and (q.chat_id is None or p.spec.chat_id == q.chat_id)
            and (q.type is None or p.spec.task == q.type))


def fold_answer(state: Projection, query: msgspec.Struct) -> Answer:
    """The same answer from a projection folded on the spot (the fallback, and the tests' oracle)."""
    return answer(ReadIndex(state), query)
