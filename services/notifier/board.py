"""What the notifier knows: every promise born from a chat, folded from the log.  Pure.

Only promises with a ``chat_id`` are kept.  Besides the promise's own facts
(started, progress, its first terminal event, spawned children) it keeps the
notifier's own records (``notice_intended``, ``notified``) so a restarted
notifier knows what was already said.  A respond promise that spawned two or
more children made a *plan*; those children are its steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from msgspec.structs import replace

from schemas.commands import RespondResult, read_answer
from schemas.events import (
    Approved,
    AttemptFailed,
    Cancelled,
    Created,
    Evidence,
    Failed,
    InputEdited,
    NoticeFailed,
    NoticeIntended,
    Notified,
    Progress,
    RequestDeleted,
    RetryScheduled,
    Spawned,
    Started,
    Succeeded,
)

Terminal = Succeeded | Failed | Cancelled


@dataclass
class Item:
    spec: Created
    started_at: float | None = None
    attempt: int = 0
    progress: str | None = None
    fraction: float | None = None
    retrying: str | None = None  # the last attempt's error while a retry is pending
    end: Terminal | None = None
    evidence: Evidence | None = None  # of the last attempt that ended
    spawned: Spawned | None = None
    intents: dict[str, NoticeIntended] = field(default_factory=dict)
    notified: dict[str, Notified] = field(default_factory=dict)
    latest_at: float = 0.0  # time of the latest fact about the work (not about notices)
    approved: bool = False
    edits: list[InputEdited] = field(default_factory=list)  # of the message it answers (decision 50)
    deleted: bool = False  # the message it answers is gone: nothing replies to it or reacts on it
    in_digest: int | None = None  # the promise whose digest intent names it, told or not yet (decision 52)
    # A respond promise's result, read once when it succeeds (None: unreadable); ``asks``: the scheduler
    # records ``spawned`` for it, so its reply waits for that.
    answer: RespondResult | None = None
    asks: bool = False

    @property
    def id(self) -> int:
        return self.spec.id

    @property
    def awaiting(self) -> bool:
        """Created awaiting approval and neither approved nor ended yet (decision 45)."""
        return self.spec.awaits_approval is not None and not self.approved and self.end is None

    @property
    def respond(self) -> bool:
        return self.spec.task == "respond"

    @property
    def chat_id(self) -> int:
        return self.spec.chat_id  # type: ignore[return-value]


class Board:
    def __init__(self) -> None:
        self.items: dict[int, Item] = {}
        self.last_seq = 0
        self.unreachable: dict[int, NoticeFailed] = {}  # chat -> the refusal that closed it (decision 52)
        self.reopened: set[int] = set()  # chats a new request came from since they were closed; the service takes it

    def take_reopened(self) -> set[int]:
        out, self.reopened = self.reopened, set()
        return out

    def apply(self, event, seq: int = 0) -> set[int]:
        """Fold one event; return the ids whose notices may have changed (the promise and its parent)."""
        if seq:
            if seq <= self.last_seq:
                return set()
            self.last_seq = seq
        if isinstance(event, Created):
            if event.chat_id is None or event.id in self.items:
                return set()
            # Message id 0: a notice that answers no message (a bot's lost updates): it stands alone, as a deleted one's.
            self.items[event.id] = Item(spec=event, latest_at=event.at, deleted=event.message_id == 0)
            if event.task == "respond" and event.message_id and self.unreachable.pop(event.chat_id, None):
                self.reopened.add(event.chat_id)  # someone wrote from it after it refused us: try it again
            return {event.id}
        item = self.items.get(getattr(event, "id", None))
        if item is None:
            return set()
        match event:
            case NoticeIntended():
                item.intents.setdefault(event.kind, event)
                for covered in event.covers:
                    if (told := self.items.get(covered)) is not None and told.in_digest is None:
                        told.in_digest = item.id
                return {item.id}
            case Notified():
                item.notified.setdefault(event.kind, event)
                for covered in event.covers:  # a digest told these too
                    if (told := self.items.get(covered)) is not None:
                        told.notified.setdefault("digest", event)
                return {item.id}
            case NoticeFailed():  # settled as surely as a sent one: never planned again
                item.notified.setdefault(event.kind, Notified(id=item.id, kind=event.kind, chat_id=event.chat_id,
                                                              at=event.at))
                if not event.unsent:  # Telegram's own answer closes the chat; the notices after it only follow
                    self.unreachable[event.chat_id] = event
                    self.reopened.discard(event.chat_id)
                return {item.id}
            case RequestDeleted():
                item.deleted = True
                return {item.id}
            case InputEdited():  # answered even after the end: "too late, here is how"
                if all(e.edited_at != event.edited_at for e in item.edits):
                    item.edits.append(event)
                    item.latest_at = max(item.latest_at, event.at)
                    if event.applied and event.title:
                        item.spec = replace(item.spec, title=event.title)
                return {item.id}
        if item.end is not None and not isinstance(event, Spawned):
            return set()  # the first terminal event wins
        item.latest_at = max(item.latest_at, event.at)
        match event:
            case Started():
                item.started_at = item.started_at or event.at
                item.attempt, item.retrying = event.attempt, None
            case Progress():
                item.progress, item.fraction = event.text, event.fraction
            case AttemptFailed():
                item.retrying = event.error
                item.evidence = event.evidence or item.evidence
            case RetryScheduled():
                pass
            case Approved():
                item.approved = True
            case Succeeded():
                item.end, item.evidence = event, event.evidence or item.evidence
                if item.respond:
                    item.answer, item.asks = read_answer(event.result)
            case Failed() | Cancelled():
                item.end = event
            case Spawned():
                if item.spawned is None:
                    item.spawned = event
            case _:
                return set()
        touched = {item.id}
        parent = self.items.get(item.spec.parent_id) if item.spec.parent_id is not None else None
        if parent is not None:  # its plan's checklist (or ✅/❌) may change; the plan is as recent as its steps
            parent.latest_at = max(parent.latest_at, item.latest_at)
            touched.add(parent.id)
        return touched

    def children(self, item: Item) -> list[Item | None]:
        if item.spawned is None:
            return []
        return [self.items.get(i) for i in sorted(item.spawned.children.values())]

    def steps(self, item: Item) -> list[Item]:
        """The steps of the plan a respond promise made: the two or more children it spawned, else none."""
        if not item.respond or item.spawned is None or len(item.spawned.children) < 2:
            return []
        return [c for c in self.children(item) if c is not None]

    def plan_of(self, item: Item) -> Item | None:
        """The respond promise whose plan ``item`` is a step of (a retried copy is no step: it was not spawned)."""
        parent = self.items.get(item.spec.parent_id) if item.spec.parent_id is not None else None
        if parent is None or not self.steps(parent) or item.id not in parent.spawned.children.values():
            return None
        return parent
