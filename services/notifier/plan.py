"""Which notices a promise is owed now.  Pure: the board and ``now`` in, actions out.

Per promise born from a chat:

- respond promise: 👀 on the original message when it starts; its terminal
  message (the reply, naming the real ids of what it spawned: sent after
  ``spawned`` when the result promised anything); ✅ or ❌ on the original
  message once it and every child it spawned have ended.
- background promise: one status message when it starts, edited in place as
  it progresses and once more when it ends; exactly one terminal message
  replying to the original request.
- a plan (a respond promise that spawned two or more steps), told as a
  checklist (``[telegram] plan_notices``, decision 43): the respond promise's
  reply carries the checklist and is edited in place as the steps go (a long
  reply gets the checklist as a ``status`` message of its own); once every
  step has ended, one ``final`` reply with each step's short result.  Its
  steps send nothing of their own, except those whose type says
  ``notify = "each"`` (or every step, with ``plan_notices = "each"``): they
  are told as background promises, and still have their checklist line.

A notice already recorded (``notified``) is never planned again; one whose
intent is recorded but not its ``notified`` is planned with ``intended`` so
the outbox looks for it before sending.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from schemas.commands import asks_for_anything
from schemas.events import Succeeded
from valor import evidence
from valor.config import Config

from . import texts
from .board import Board, Item

EYES, DONE, FAILED = "👀", "✅", "❌"


@dataclass(frozen=True)
class React:
    id: int
    kind: str  # reaction_start | reaction_end
    chat_id: int
    message_id: int
    emoji: str

    @property
    def key(self) -> tuple:
        return (self.id, self.kind)


@dataclass(frozen=True)
class Send:
    id: int
    kind: str  # status | terminal | final | edited:<edit date>
    chat_id: int
    reply_to: int | None
    text: str
    intended: bool = False  # an intent is already logged: look for it before sending
    recorded: tuple[str, ...] = ()  # the intent's digests: the text as first sent (a checklist changes since)
    answer: bool = False  # a respond promise's reply: goes before background notices waiting in the chat

    @property
    def key(self) -> tuple:
        return (self.id, self.kind)


@dataclass(frozen=True)
class Edit:
    id: int
    chat_id: int
    message_id: int
    text: str

    @property
    def key(self) -> tuple:
        return (self.id, "edit")  # a newer edit replaces one still waiting


Action = React | Send | Edit


@dataclass(frozen=True)
class Policy:
    """How plans are told: ``[telegram] plan_notices`` and each type's ``notify`` in valor.toml."""

    plan_notices: str = "checklist"
    notify: Mapping[str, str] = field(default_factory=dict)  # type -> its own mode

    @classmethod
    def of(cls, config: Config) -> Policy:
        return cls(config.telegram.plan_notices, {n: t.notify for n, t in config.types.items() if t.notify})

    def each(self, step: Item) -> bool:
        """The step is told on its own: a status message and a result reply."""
        return self.notify.get(step.spec.task, self.plan_notices) == "each"

    def checklist(self, board: Board, item: Item) -> list[Item]:
        """The steps of the plan ``item`` made when it is told as a checklist, else none."""
        steps = board.steps(item)
        return steps if any(not self.each(s) for s in steps) else []


CHECKLIST = Policy()


def due(board: Board, item: Item, now: float, horizon: float, policy: Policy = CHECKLIST) -> list[Action]:
    if item.spec.message_id is None or item.latest_at < now - horizon:
        return []
    if item.respond:
        out = edit_notices(item) + respond_notices(board, item, policy)
        # Its message is gone: no reaction on it (Telegram would refuse), replies stand alone.
        return [a for a in out if not (item.deleted and isinstance(a, React))]
    plan = board.plan_of(item)
    if plan is not None and not policy.each(item) and policy.checklist(board, plan):
        return []  # its plan's checklist and final reply tell it
    return background_notices(item, board)


def respond_notices(board: Board, item: Item, policy: Policy = CHECKLIST) -> list[Action]:
    out: list[Action] = []
    chat, msg = item.chat_id, item.spec.message_id
    end = item.end
    if item.started_at is not None and end is None and "reaction_start" not in item.notified:
        out.append(React(item.id, "reaction_start", chat, msg, EYES))
    if end is None:
        return out
    waits_for_spawn = isinstance(end, Succeeded) and asks_for_anything(end.result) and item.spawned is None
    steps = [] if waits_for_spawn else policy.checklist(board, item)
    if not waits_for_spawn and "terminal" not in item.notified:
        text = texts.plan_reply(item, steps, board) if steps else texts.terminal(item, board)
        out.append(_send(item, "terminal", text))
    if steps:
        out += plan_notices(board, item, steps)
    if "reaction_end" not in item.notified and not waits_for_spawn:
        children = board.children(item)
        if all(c is not None and c.end is not None for c in children):
            ok = isinstance(end, Succeeded) and not (item.spawned and item.spawned.error) and all(
                isinstance(c.end, Succeeded) and not evidence.check_failed(c.evidence) for c in children)
            out.append(React(item.id, "reaction_end", chat, msg, DONE if ok else FAILED))
    return out


def edit_notices(item: Item) -> list[Action]:
    """One short reply per edit of the message: taken, or too late and how to run it (decision 50)."""
    out: list[Action] = []
    for edit in item.edits:
        kind = edit_kind(edit.edited_at)
        if kind not in item.notified:
            out.append(_send(item, kind, texts.edited(item, edit)))
    return out


def edit_kind(edited_at: float) -> str:
    return f"edited:{int(edited_at)}"


def background_notices(item: Item, board: Board) -> list[Action]:
    out: list[Action] = []
    status = item.notified.get("status")
    if item.started_at is not None and item.end is None and "status" not in item.notified:
        out.append(_send(item, "status", texts.status(item)))
    if status is not None and status.telegram_message_id is not None:
        out.append(Edit(item.id, item.chat_id, status.telegram_message_id, texts.status(item)))
    if item.end is not None and "terminal" not in item.notified:
        out.append(_send(item, "terminal", texts.terminal(item, board)))
    return out


def plan_notices(board: Board, item: Item, steps: list[Item]) -> list[Action]:
    """The checklist (sent, then edited in place) and, once every step has ended, the final reply."""
    out: list[Action] = []
    inline = texts.checklist_inline(item)
    if not inline and "status" not in item.notified:
        out.append(_send(item, "status", texts.plan_status(item, steps, board)))
    shown = item.notified.get("terminal" if inline else "status")
    if shown is not None and shown.telegram_message_id is not None:
        text = texts.plan_reply(item, steps, board) if inline else texts.plan_status(item, steps, board)
        out.append(Edit(item.id, item.chat_id, shown.telegram_message_id, text))
    if all(s.end is not None for s in steps) and "final" not in item.notified:
        out.append(_send(item, "final", texts.plan_final(item, steps, board)))
    return out


def _send(item: Item, kind: str, text: str) -> Send:
    intent = item.intents.get(kind)
    return Send(item.id, kind, item.chat_id, None if item.deleted else item.spec.message_id, text,
                intended=intent is not None,
                recorded=tuple(intent.parts) if intent is not None else (), answer=item.respond)


