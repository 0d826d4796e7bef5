"""What the agents see of a chat: its recent messages and its promises.

Built from the scheduler's served chat view (decision 48) or, as a fallback,
by a pure fold (``chat_view``) of the PROMISES log; ``history.py`` does the
reading.  ``events`` holds the log of the promises a message may be about
(``load_events`` reads more on demand), not of every promise of the chat.  A promise belongs to a chat when ``spec.chat_id`` is that
chat: promises submitted from the CLI belong to no chat and are not shown.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from promises import evidence, story
from promises.projection import Projection, Promise, Schedule
from promises.states import State
from schemas.events import BudgetAdjusted, MessageReceived, PromiseEvent
from valor import budget, spend
from valor.readmodel import chat_schedules, user_spend

EventReader = Callable[[list[int]], Awaitable[dict[int, list[PromiseEvent]]]]


@dataclass
class ChatView:
    chat_id: int
    promises: dict[int, Promise] = field(default_factory=dict)  # this chat's, by id
    events: dict[int, list[PromiseEvent]] = field(default_factory=dict)  # per promise, log order
    messages: list[MessageReceived] = field(default_factory=list)  # before the current one, oldest first
    read_events: EventReader | None = None  # reads more promises' events (None: ``events`` is complete)
    schedules: dict[int, Schedule] = field(default_factory=dict)  # this chat's, not deleted, by id
    # The sender's spend in every chat and the changes to their budgets, when read for them (/usage, /budget)
    user_charges: list[spend.Charge] = field(default_factory=list)
    user_adjustments: list[BudgetAdjusted] = field(default_factory=list)

    def charges(self) -> list[spend.Charge]:
        """This chat's charges, and the sender's in other chats when they were read."""
        mine = spend.charges(self.promises.values())
        seen = {(c.promise_id, c.attempt) for c in mine}
        return mine + [c for c in self.user_charges if (c.promise_id, c.attempt) not in seen]

    def adjustments(self) -> list[BudgetAdjusted]:
        mine = budget.adjustments(self.promises.values())
        seen = {(a.id, a.request_id, a.period, a.scope) for a in mine}
        return mine + [a for a in self.user_adjustments if (a.id, a.request_id, a.period, a.scope) not in seen]

    async def load_events(self, ids: Iterable[int]) -> None:
        """Make sure ``events`` holds the log of these promises of the chat."""
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
        """The chat's promises other than the agent's own respond promises, oldest first."""
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
              messages: list[MessageReceived] | None = None, user_id: int | None = None) -> ChatView:
    state = Projection()
    by_id: dict[int, list[PromiseEvent]] = {}
    for seq, event in events:
        state.apply(event, seq)
        by_id.setdefault(getattr(event, "id", 0), []).append(event)
    mine = {pid: p for pid, p in state.promises.items() if p.spec.chat_id == chat_id}
    return ChatView(chat_id, mine, {pid: by_id.get(pid, []) for pid in mine}, list(messages or []),
                    schedules={s.id: s for s in chat_schedules(state, chat_id)},
                    **_for_user(state, user_id))


def _for_user(state: Projection, user_id: int | None) -> dict:
    if user_id is None:
        return {}
    charges, adjustments = user_spend(state, user_id)
    return {"user_charges": charges, "user_adjustments": adjustments}
