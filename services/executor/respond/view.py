"""What the agents see of a chat: its recent messages and its promises.

Built from the scheduler's served chat answer (decision 48) or, as a fallback,
by a pure fold (``chat_view``) of the PROMISES log answering the same query;
``history.py`` does the reading.  Both hold what the message can be about
(decision 75), not the chat's whole life: its newest open and newest work
promises with the totals, the promises it names and the one a reply is about
with their relatives.  ``events`` holds the log of the promises a message may
be about (``load_events`` reads more on demand).  A promise belongs to a chat when ``spec.chat_id`` is that
chat: promises submitted from the CLI belong to no chat and are not shown.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import msgspec

from promises import evidence, story
from promises.projection import Projection, Promise, Schedule
from promises.states import State
from schemas.events import MessageReceived, PromiseEvent
from valor.budget import Budget
from valor.readmodel import Answer, ChatQuery, ChatSpend, fold_answer

EventReader = Callable[[list[int]], Awaitable[dict[int, list[PromiseEvent]]]]
PromiseReader = Callable[[list[int]], Awaitable[list[Promise]]]


@dataclass
class ChatView:
    chat_id: int
    promises: dict[int, Promise] = field(default_factory=dict)  # this chat's, by id
    events: dict[int, list[PromiseEvent]] = field(default_factory=dict)  # per promise, log order
    messages: list[MessageReceived] = field(default_factory=list)  # before the current one, oldest first
    read_events: EventReader | None = None  # reads more promises' events (None: ``events`` is complete)
    schedules: dict[int, Schedule] = field(default_factory=dict)  # this chat's, not deleted, by id
    # The chat's spend and the sender's in every chat, summed by the read (/usage, /budget); for a view
    # folded without a query, how to sum them at a time for some budgets
    spent: ChatSpend | None = None
    spend_of: Callable[[float, list[Budget]], ChatSpend | None] | None = None
    # The chat's work promises (not its respond ones): how many are open, in all, and by state
    open_total: int = 0
    work_total: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    read_promises: PromiseReader | None = None  # reads promises of the chat the read did not hold

    def spend(self, now: float, budgets: list[Budget]) -> ChatSpend | None:
        """The chat's spend at ``now`` and where ``budgets`` stand, as read (None: not read)."""
        if self.spent is None and self.spend_of is not None:
            return self.spend_of(now, budgets)
        return self.spent

    async def load_events(self, ids: Iterable[int], events: bool = True) -> None:
        """Make sure the view holds these promises of the chat and (with ``events``) their logs.

        A long chat's read holds what the message named (decision 75): a promise the agent asks
        about later is read then.
        """
        ids = set(ids)
        if (unseen := sorted(i for i in ids if i not in self.promises)) and self.read_promises is not None:
            self.promises.update({p.id: p for p in await self.read_promises(unseen) if p.spec.chat_id == self.chat_id})
        if not events:
            return
        missing = sorted({i for i in ids if i in self.promises and i not in self.events})
        if missing and self.read_events is not None:
            self.events.update(await self.read_events(missing))

    def get(self, promise_id: int) -> Promise | None:
        return self.promises.get(promise_id)

    def states(self) -> dict[int, str]:
        """Each of the chat's promises' state as the log records it: what a reply's claims are checked against.

        A success whose last check failed is not a plain success (as in the
        notifier's ⚠️): it backs no claim that the work passes.
        """
        out = {}
        for pid, p in self.promises.items():
            # A succeeded promise's evidence is its succeeding attempt's: the last one that ended.
            failed = evidence.check_failed(p.evidence) if p.state == State.SUCCEEDED and p.evidence else None
            out[pid] = story.succeeded_but(failed) if failed else p.state
        return out

    def work(self) -> list[Promise]:
        """The chat's promises read other than the agent's own respond promises, oldest first.

        Not every one of a long chat's: ``work_total`` and ``open_total`` count them all.
        """
        return [p for _, p in sorted(self.promises.items()) if p.spec.task != "respond"]

    def about(self, message_id: int) -> Promise | None:
        """The promise that Valor's message ``message_id`` in this chat is about (its status or result).

        Read from the notifier's ``notified`` records (``Promise.sent``); a
        reaction's record names the user's own message, so only messages Valor
        sent count.
        """
        return next((p for p in self.promises.values() if message_id in p.sent), None)

    def open_dependents(self, promise_id: int) -> list[int]:
        return [p.id for p in self.promises.values()
                if promise_id in p.spec.depends_on and not p.terminal]


def chat_view(events: Iterable[tuple[int, PromiseEvent]], chat_id: int,
              messages: list[MessageReceived] | None = None, user_id: int | None = None,
              query: ChatQuery | None = None) -> ChatView:
    """The view the served read gives ``query``, from a fold of ``events`` (the fallback, and the tests' views).

    With no ``query``: every promise of the chat, as if the message named them all, with the spend
    (``user_id``'s too): the tests' views of a few promises, whichever message they are then shown.
    """
    state = Projection()
    by_id: dict[int, list[PromiseEvent]] = {}
    for seq, event in events:
        state.apply(event, seq)
        by_id.setdefault(getattr(event, "id", 0), []).append(event)
    every = query is None
    if query is None:
        query = ChatQuery(chat_id=chat_id, about=sorted(state.promises), user_id=user_id)
    answer = fold_answer(state, query)
    view = view_of(answer, chat_id, messages)
    view.events = {pid: by_id.get(pid, []) for pid in view.promises}

    async def read_promises(ids: list[int]) -> list[Promise]:
        return [state.promises[i] for i in ids if i in state.promises]

    async def read_events(ids: list[int]) -> dict[int, list[PromiseEvent]]:
        return {i: by_id.get(i, []) for i in ids}

    view.read_promises, view.read_events = read_promises, read_events
    if every:
        asked = query

        def spend_of(now: float, budgets: list[Budget]) -> ChatSpend | None:
            q = msgspec.structs.replace(asked, about=[], spend=True, now=now, budgets=budgets)
            return fold_answer(state, q).spend

        view.spend_of = spend_of
    return view


def view_of(answer: Answer, chat_id: int, messages: list[MessageReceived] | None = None,
            read_events: EventReader | None = None) -> ChatView:
    return ChatView(chat_id, {p.id: p for p in answer.promises}, {}, list(messages or []), read_events,
                    {s.id: s for s in answer.schedules}, answer.spend, None,
                    answer.open_total, answer.work_total, answer.counts)
