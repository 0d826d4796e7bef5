"""Which notices a promise is owed now.  Pure: the board and ``now`` in, actions out.

Per promise born from a chat:

- respond promise: 👀 on the original message when it starts; its terminal
  message (the reply, naming the real ids of what it spawned: sent after
  ``spawned`` when the result promised anything); ✅ or ❌ on the original
  message once it and every child it spawned have ended.
- background promise: one status message when it starts, edited in place as
  it progresses and once more when it ends (that edit is recorded, and made at
  any age, also for a status only intended when the notifier died: it is looked
  for, never sent again; decision 63); exactly one terminal message replying to
  the original request.
- a plan (a respond promise that spawned two or more steps), told as a
  checklist (``[telegram] plan_notices``, decision 43): the respond promise's
  reply carries the checklist and is edited in place as the steps go (a long
  reply gets the checklist as a ``status`` message of its own); once every
  step has ended, one ``final`` reply with each step's short result.  Its
  steps send nothing of their own, except those whose type says
  ``notify = "each"`` (or every step, with ``plan_notices = "each"``): they
  are told as background promises, and still have their checklist line.
  Once every step ended the checklist is set to its end once, recorded, at any
  age, like a status (decision 63).

A notice already recorded (``notified``, or ``notice_failed`` for a chat that
cannot be reached) is never planned again; one whose intent is recorded but not
its ``notified`` is planned with ``intended`` so the outbox looks for it before
sending.

Past the notice horizon a promise gets no notices of its own: the promises that
ended unheard meanwhile (the notifier was away longer than that) are told in
one *digest* per chat (``digests``), a notice like the others, recorded on the
first of them with the ids it covers (decision 52).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from schemas.events import MessageKind, ReactionKind, Succeeded, edited_kind
from valor import evidence
from valor.config import Config

from . import texts
from .board import Board, Item

EYES, DONE, FAILED = "👀", "✅", "❌"
STATUS_END = "status_end"  # the kind recorded once a status message shows its promise's end


@dataclass(frozen=True)
class React:
    id: int
    kind: ReactionKind
    chat_id: int
    message_id: int
    emoji: str

    @property
    def key(self) -> tuple:
        return (self.id, self.kind)


@dataclass(frozen=True)
class Send:
    id: int
    kind: MessageKind | str  # str: edited_kind(...), the answer to one edit
    chat_id: int
    reply_to: int | None
    text: str
    intended: bool = False  # an intent is already logged: look for it before sending
    recorded: tuple[str, ...] = ()  # the intent's digests: the text as first sent (a checklist changes since)
    answer: bool = False  # a respond promise's reply: goes before background notices waiting in the chat
    covers: tuple[int, ...] = ()  # a digest: the promises it tells
    find_only: bool = False  # a status that may be in the chat: found and recorded, never sent (``status_end``)

    @property
    def key(self) -> tuple:
        return (self.id, self.kind)


@dataclass(frozen=True)
class Edit:
    id: int
    chat_id: int
    message_id: int
    text: str
    final: bool = False  # the status set to its promise's end: recorded as ``status_end`` once done

    @property
    def key(self) -> tuple:
        return (self.id, STATUS_END if self.final else "edit")  # a newer edit replaces one still waiting


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
    if item.spec.message_id is None:
        return []
    if item.latest_at < now - horizon:
        # Nothing new out of the blue; but a status message that may be in the chat still
        # says "running" until it is set to the end, however long ago that was.
        return checklist_end(board, item, policy) if item.respond else status_end(item)
    if item.respond:
        out = edit_notices(item) + respond_notices(board, item, policy)
        # Its message is gone: no reaction on it (Telegram would refuse), replies stand alone.
        return [a for a in out if not (item.deleted and isinstance(a, React))]
    plan = board.plan_of(item)
    if plan is not None and not policy.each(item) and policy.checklist(board, plan):
        return []  # its plan's checklist and final reply tell it
    return background_notices(item, board)


def digests(board: Board, items: list[Item], now: float, horizon: float,
            policy: Policy = CHECKLIST) -> list[Send]:
    """One message per chat telling the ``items`` that ended unheard longer than ``horizon`` ago.

    A digest whose intent is logged is planned again as it was (same promises,
    same text), so the outbox finds it rather than sending a second one.
    """
    pending: dict[int, Item] = {}  # anchor id -> anchor, for digests intended but not recorded as sent
    fresh: dict[int, list[Item]] = {}  # chat -> promises no digest names yet
    for item in items:
        if not _owed_digest(board, item, now, horizon, policy):
            continue
        anchor = board.items.get(item.in_digest) if item.in_digest is not None else None
        if anchor is not None:
            if "digest" not in anchor.notified:
                pending[anchor.id] = anchor
            continue
        fresh.setdefault(item.chat_id, []).append(item)
    out = []
    for anchor in pending.values():
        told = [board.items[i] for i in anchor.intents["digest"].covers if i in board.items]
        out.append(_digest(board, anchor, told, policy))
    for chat_items in fresh.values():
        told = sorted(chat_items, key=lambda i: i.id)
        out.append(_digest(board, told[0], told, policy))
    return out


def _digest(board: Board, anchor: Item, told: list[Item], policy: Policy) -> Send:
    text = texts.away_digest([(i, policy.checklist(board, i) if i.respond else []) for i in told], board)
    intent = anchor.intents.get("digest")
    return Send(anchor.id, "digest", anchor.chat_id, None, text, intended=intent is not None,
                recorded=tuple(intent.parts) if intent is not None else (),
                covers=tuple(i.id for i in told))


def _owed_digest(board: Board, item: Item, now: float, horizon: float, policy: Policy) -> bool:
    """Ended past the horizon and never told: not its own end notice, nor its plan's, nor a digest."""
    if item.spec.message_id is None or item.end is None or item.latest_at >= now - horizon:
        return False
    if "digest" in item.notified:
        return False
    plan = board.plan_of(item)
    if plan is not None and not policy.each(item) and policy.checklist(board, plan):
        return False  # its plan's line in the digest (or final reply) tells it
    if item.respond and policy.checklist(board, item):
        return "final" not in item.notified
    return "terminal" not in item.notified


def respond_notices(board: Board, item: Item, policy: Policy = CHECKLIST) -> list[Action]:
    out: list[Action] = []
    chat, msg = item.chat_id, item.spec.message_id
    end = item.end
    if item.started_at is not None and end is None and "reaction_start" not in item.notified:
        out.append(React(item.id, "reaction_start", chat, msg, EYES))
    if end is None:
        return out
    waits_for_spawn = isinstance(end, Succeeded) and item.asks and item.spawned is None
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
        kind = edited_kind(edit.edited_at)
        if kind not in item.notified:
            out.append(_send(item, kind, texts.edited(item, edit)))
    return out


def background_notices(item: Item, board: Board) -> list[Action]:
    out: list[Action] = []
    status = item.notified.get("status")
    if item.end is not None:
        out += status_end(item)
    elif item.started_at is not None and "status" not in item.notified:
        out.append(_send(item, "status", texts.status(item)))
    elif status is not None and status.telegram_message_id is not None:
        out.append(Edit(item.id, item.chat_id, status.telegram_message_id, texts.status(item)))
    if item.end is not None and "terminal" not in item.notified:
        out.append(_send(item, "terminal", texts.terminal(item, board)))
    return out


def status_end(item: Item) -> list[Action]:
    """An ended promise's status message, wherever it may be, set to the end once (the issue's "never lie").

    Sent and recorded: edited, and the edit recorded (``status_end``) so no restart
    edits it again.  Intended, not recorded (the notifier died between sending and
    recording, and the work ended meanwhile): looked for in the chat, never sent
    again; found, it is recorded and then edited like a sent one.  Neither: there
    is no status message, and none is sent once the work is over.
    """
    if item.end is None or STATUS_END in item.notified:
        return []
    status = item.notified.get("status")
    if status is not None:
        if status.telegram_message_id is None:
            return []  # looked for and not found: nothing in the chat to set
        return [Edit(item.id, item.chat_id, status.telegram_message_id, texts.status(item), final=True)]
    intent = item.intents.get("status")
    if intent is None:
        return []
    return [Send(item.id, "status", item.chat_id, intent.reply_to, texts.status(item), intended=True,
                 recorded=tuple(intent.parts), find_only=True)]


def plan_notices(board: Board, item: Item, steps: list[Item]) -> list[Action]:
    """The checklist (sent, then edited in place) and, once every step has ended, the final reply."""
    out: list[Action] = []
    done = all(s.end is not None for s in steps)
    inline = texts.checklist_inline(item)
    if not inline and "status" not in item.notified and not (done and "status" in item.intents):
        out.append(_send(item, "status", texts.plan_status(item, steps, board)))
    if done:
        out += _checklist_end(board, item, steps, inline)
    else:
        shown = item.notified.get("terminal" if inline else "status")
        if shown is not None and shown.telegram_message_id is not None:
            text = texts.plan_reply(item, steps, board) if inline else texts.plan_status(item, steps, board)
            out.append(Edit(item.id, item.chat_id, shown.telegram_message_id, text))
    if done and "final" not in item.notified:
        out.append(_send(item, "final", texts.plan_final(item, steps, board)))
    return out


def checklist_end(board: Board, item: Item, policy: Policy = CHECKLIST) -> list[Action]:
    """A plan's checklist set to its end once every step ended, at any age, as a status is (``status_end``)."""
    steps = policy.checklist(board, item) if item.end is not None else []
    if not steps or any(s.end is None for s in steps):
        return []
    return _checklist_end(board, item, steps, texts.checklist_inline(item))


def _checklist_end(board: Board, item: Item, steps: list[Item], inline: bool) -> list[Action]:
    if STATUS_END in item.notified:
        return []
    shown = item.notified.get("terminal" if inline else "status")
    if shown is not None:
        if shown.telegram_message_id is None:
            return []
        text = texts.plan_reply(item, steps, board) if inline else texts.plan_status(item, steps, board)
        return [Edit(item.id, item.chat_id, shown.telegram_message_id, text, final=True)]
    intent = item.intents.get("status")
    if inline or intent is None:
        return []  # an unsent reply is the reply's own business (or the digest's), not a checklist's
    return [Send(item.id, "status", item.chat_id, intent.reply_to, texts.plan_status(item, steps, board),
                 intended=True, recorded=tuple(intent.parts), find_only=True)]


def _send(item: Item, kind: str, text: str) -> Send:
    intent = item.intents.get(kind)
    return Send(item.id, kind, item.chat_id, None if item.deleted else item.spec.message_id, text,
                intended=intent is not None,
                recorded=tuple(intent.parts) if intent is not None else (), answer=item.respond)


