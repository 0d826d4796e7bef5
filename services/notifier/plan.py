"""Which notices a promise is owed now.  Pure: the board and ``now`` in, actions out.

Per promise born from a chat:

- respond promise: 👀 on the original message when it starts; its terminal
  message (the reply, naming the real ids of what it spawned: sent after
  ``spawned`` when the result promised anything); ✅ or ❌ on the original
  message once it and every child it spawned have ended.
- background promise: one status message when it starts, edited in place as
  it progresses and once more when it ends; exactly one terminal message
  replying to the original request.

A notice already recorded (``notified``) is never planned again; one whose
intent is recorded but not its ``notified`` is planned with ``intended`` so
the outbox looks for it before sending.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.events import Succeeded
from valor import evidence

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
    kind: str  # status | terminal
    chat_id: int
    reply_to: int | None
    text: str
    intended: bool = False  # an intent is already logged: look for it before sending
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


def due(board: Board, item: Item, now: float, horizon: float) -> list[Action]:
    if item.spec.message_id is None or item.latest_at < now - horizon:
        return []
    return respond_notices(board, item) if item.respond else background_notices(item, board)


def respond_notices(board: Board, item: Item) -> list[Action]:
    out: list[Action] = []
    chat, msg = item.chat_id, item.spec.message_id
    end = item.end
    if item.started_at is not None and end is None and "reaction_start" not in item.notified:
        out.append(React(item.id, "reaction_start", chat, msg, EYES))
    if end is None:
        return out
    waits_for_spawn = isinstance(end, Succeeded) and _promised_anything(end.result) and item.spawned is None
    if not waits_for_spawn and "terminal" not in item.notified:
        out.append(_send(item, "terminal", texts.terminal(item, board)))
    if "reaction_end" not in item.notified and not waits_for_spawn:
        children = board.children(item)
        if all(c is not None and c.end is not None for c in children):
            ok = isinstance(end, Succeeded) and not (item.spawned and item.spawned.error) and all(
                isinstance(c.end, Succeeded) and not evidence.check_failed(c.evidence) for c in children)
            out.append(React(item.id, "reaction_end", chat, msg, DONE if ok else FAILED))
    return out


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


def _send(item: Item, kind: str, text: str) -> Send:
    return Send(item.id, kind, item.chat_id, item.spec.message_id, text, intended=kind in item.intents,
                answer=item.respond)


def _promised_anything(result) -> bool:
    # The scheduler records `spawned` exactly when the result names promises or commands.
    return isinstance(result, dict) and bool(result.get("promises") or result.get("commands"))
