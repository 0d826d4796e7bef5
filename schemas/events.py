"""Facts recorded in the log.

Every event is a frozen msgspec Struct tagged by ``type``.  Evolution rules: new
fields get defaults, no field ever changes type, readers ignore unknown fields.
Times are POSIX seconds (float) taken by the writer; readers never consult a
clock to interpret them.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

# Closed sets of words, as the log has always held them: a Literal narrows the str
# without changing the wire (every value ever written is in it), and a writer that
# invents a new one fails at encode time instead of confusing a reader.
ChatKind = Literal["private", "group", "channel", "console"]
FileStatus = Literal["added", "modified", "deleted"]
BudgetScope = Literal["chat", "user"]
BudgetPeriod = Literal["day", "month"]
Missed = Literal["skip", "catch_up_one"]  # what ticks passed while nothing ran become
Overlap = Literal["skip", "queue", "run"]  # a tick while the last run is open
SkipReason = Literal["missed", "overlap"]
# The notifier's notices about a promise.  A notice event's ``kind`` stays a str on the
# wire because the answer to an edit is ``edited:<edit date>`` (``edited_kind``).
ReactionKind = Literal["reaction_start", "reaction_end"]
MessageKind = Literal["status", "terminal", "final", "digest"]
NoticeKind = ReactionKind | MessageKind


def edited_kind(edited_at: float) -> str:
    """The notice answering one edit of a request (decision 50): one per edit date."""
    return f"edited:{int(edited_at)}"


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", omit_defaults=True):
    at: float = 0.0


# --- chat -------------------------------------------------------------------


class Attachment(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A file that came with a chat message: where ingest saved it, or why it did not.

    ``path`` is relative to the chat's workspace (``inbox/<chat id>/<message id>-<name>``)
    and set only when the file is there; ``skipped`` says why it is not (too big, the
    download failed).
    """

    name: str  # the file's name, made safe for a path
    path: str = ""
    size: int | None = None  # bytes, as Telegram announced it (or the copied file's)
    mime_type: str = ""
    skipped: str = ""


class MessageReceived(Event, tag="message.received", frozen=True):
    """An inbound chat message accepted by ingest (subject ``chat.<chat_id>.in``)."""

    chat_id: int
    message_id: int
    sender_id: int = 0
    sender_name: str = ""
    text: str = ""
    reply_to: int | None = None
    sent_at: float = 0.0
    chat_kind: ChatKind = "private"
    mentioned: bool = False
    caught_up: bool = False
    # A photo or document, saved in the chat's workspace; ``text`` is then its caption.
    attachments: list[Attachment] = []


class MessageEdited(Event, tag="message.edited", kw_only=True, frozen=True):
    """A message Valor took was edited (subject ``chat.<chat_id>.in``, after the message itself).

    ``message`` is the message as it reads now, accepted by the same rules as a
    new one; ``edited_at`` (Telegram's edit date) tells one edit from the next.
    """

    chat_id: int
    message_id: int
    edited_at: float = 0.0
    message: MessageReceived


class MessageDeleted(Event, tag="message.deleted", kw_only=True, frozen=True):
    """Messages were deleted (subject ``chat.<chat_id>.in``).

    Telegram does not always say where: for a user account's private chats and
    basic groups a deletion names message ids only (they are unique across
    those chats), and ``chat_id`` is then 0 (subject ``chat.0.in``).
    """

    chat_id: int = 0
    message_ids: list[int] = []


class MessagesSkipped(Event, tag="messages_skipped", kw_only=True, frozen=True):
    """Catch-up found messages for Valor older than ``catchup_horizon``: not acted on, but told
    (subject ``chat.<chat_id>.in``; decision 54).

    One fact per chat and skipped range, ``first_id`` to ``last_id`` (``count`` messages sent
    between ``oldest`` and ``newest``); ``texts`` are the first few, cut short, for the reply.
    """

    chat_id: int
    count: int = 0
    first_id: int = 0
    last_id: int = 0
    oldest: float = 0.0
    newest: float = 0.0
    horizon: float = 0.0  # seconds: the catchup_horizon they were older than
    texts: list[str] = []
    # The skipped messages themselves (the first ones, within a bound), run by a "run them" reply.
    messages: list[MessageReceived] = []


class UpdatesGap(Event, tag="updates_gap", kw_only=True, frozen=True):
    """Telegram said the updates missed are too many to give (a bot account's "difference too long"):
    messages sent to the chat before ``until`` may never reach Valor (subject ``chat.<chat_id>.in``).

    A bot cannot read history, so the gap cannot be filled, only told (issue 15).
    """

    chat_id: int
    until: float = 0.0  # when Telegram reported it: messages sent before may be lost
    channel: bool = False  # a channel's own gap; else the account's (private chats and basic groups)


ChatEvent = MessageReceived | MessageEdited | MessageDeleted | MessagesSkipped | UpdatesGap


# --- promises (subject ``promise.<id>.<type>``) -------------------------------


class Created(Event, tag="created", frozen=True):
    """A promise exists.  Everything needed to run it is fixed here."""

    id: int
    title: str
    task: str = "noop"  # the task type: noop, echo, shell, respond, code, ...
    input: Any = None
    depends_on: list[int] = []
    priority: int = 5  # 1 (highest) .. 9
    queue: str = "default"
    concurrency_key: str | None = None
    concurrency_limit: int = 1
    max_attempts: int = 1
    backoff: float = 1.0  # seconds before the first retry
    backoff_factor: float = 2.0
    backoff_max: float = 300.0
    jitter: float = 0.1  # +- fraction of the delay
    timeout: float | None = None  # seconds per attempt
    not_before: float | None = None
    chat_id: int | None = None
    message_id: int | None = None
    parent_id: int | None = None  # the respond promise that spawned it
    name: str | None = None  # local name inside a plan
    request_id: str | None = None  # the command that asked for it
    request_index: int = 0
    retry_of: int | None = None
    continues: int | None = None  # the Claude Code promise whose session this one resumes
    resume_session: str | None = None  # that session's id, resolved once when this was created
    # Held until ``approved`` (decision 45): why it waits (None: it need not), and when it is
    # cancelled if nobody answered (None: never).  A plan's steps are held and approved together.
    awaits_approval: str | None = None
    approve_by: float | None = None
    # USD an attempt may spend (decision 47): the type's cap or the request's own; None: no cap.
    max_cost: float | None = None
    # What it will likely cost (decision 49): the mean spend of the last ``estimate_runs`` ended
    # promises of its type when it was created; None: no history to go by.
    estimate_usd: float | None = None
    estimate_runs: int = 0
    # A schedule's tick (decision 51): which schedule, the tick's time, and how many of its
    # ticks were skipped since its previous run (told to the chat with this one).
    schedule_id: int | None = None
    tick: float | None = None
    skipped: int = 0


class Approved(Event, tag="approved", frozen=True):
    """A promise created awaiting approval may run.  Refusing one is a ``cancelled`` saying so."""

    id: int
    by: str = ""
    reason: str = ""


class BudgetAdjusted(Event, tag="budget_adjusted", frozen=True):
    """An owner raised or reset a budget from the chat (decision 49), on the subject of the
    respond promise that carried the command.

    ``add`` USD more for the current ``period`` (day or month, UTC) of the chat's or the
    user's budget; ``reset``: that period's spend counts from ``at`` on, and earlier raises go.
    """

    id: int
    scope: BudgetScope = "chat"
    target: int = 0  # the chat id or the user id
    period: BudgetPeriod = "day"
    add: float = 0.0
    reset: bool = False
    by: str = ""
    request_id: str = ""  # "budget:<respond promise id>:<command index>:<period>", once per request


class Dispatched(Event, tag="dispatched", frozen=True):
    id: int
    attempt: int
    queue: str = "default"


class Started(Event, tag="started", frozen=True):
    id: int
    attempt: int
    executor: str = ""
    delivery: int = 1  # > 1 when an executor resumed after another one vanished


class Progress(Event, tag="progress", frozen=True):
    id: int
    attempt: int
    text: str = ""
    fraction: float | None = None


class CommandRun(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One shell command an attempt ran (or was refused), read from the tool's own output."""

    command: str
    exit_code: int | None = None  # None: it did not run to an exit (refused, interrupted)
    refused: str | None = None  # why it was not run
    output: str = ""  # the end of what it printed
    check: bool = False  # a test or check command (pytest, npm test, ...)


class FileChange(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A file the attempt added, modified or deleted in its workspace."""

    path: str  # relative to the workspace
    status: FileStatus
    added: int | None = None  # lines; None for a binary file
    removed: int | None = None


class Refusal(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A tool call that was not allowed to run (writing outside the workspace, reading a secret)."""

    tool: str
    target: str = ""  # the path or command it aimed at
    reason: str = ""


class TokenUsage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_creation: int = 0


class Evidence(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What an attempt did, from its own records rather than its own words.

    Commands and refusals come from the agent's tool calls and their results,
    files from the workspace before and after; lists are capped and the
    ``*_dropped`` counts say how many entries were left out.
    """

    commands: list[CommandRun] = []
    commands_dropped: int = 0
    files: list[FileChange] = []
    files_dropped: int = 0
    files_unknown: str | None = None  # why the files could not be compared
    refusals: list[Refusal] = []
    cost_usd: float | None = None
    cost_estimated: bool = False  # priced from streamed tokens, not the model client's own figure (decision 47)
    tokens: TokenUsage | None = None
    turns: int | None = None
    session_id: str | None = None


class Succeeded(Event, tag="succeeded", frozen=True):
    id: int
    attempt: int
    result: Any = None
    duration: float = 0.0
    evidence: Evidence | None = None


class AttemptFailed(Event, tag="attempt_failed", frozen=True):
    id: int
    attempt: int
    error: str = ""
    retryable: bool = True
    duration: float = 0.0
    evidence: Evidence | None = None


class AttemptStopped(Event, tag="attempt_stopped", frozen=True):
    """An attempt stopped because its promise was cancelled, with what it spent up to then.

    Recorded by the executor after ``cancelled`` (decision 47): the promise's
    end is the ``cancelled``; this keeps the attempt's spend and evidence in the log.
    """

    id: int
    attempt: int
    reason: str = ""
    duration: float = 0.0
    evidence: Evidence | None = None


class RetryScheduled(Event, tag="retry_scheduled", frozen=True):
    id: int
    next_attempt: int
    not_before: float
    delay: float = 0.0


class Failed(Event, tag="failed", frozen=True):
    id: int
    reason: str
    attempt: int = 0


class Cancelled(Event, tag="cancelled", frozen=True):
    id: int
    reason: str
    by: str = ""
    cause_id: int | None = None  # the promise whose end caused this one


class Spawned(Event, tag="spawned", frozen=True):
    """The children named in a respond result all exist (name -> id)."""

    id: int
    children: dict[str, int] = {}
    error: str | None = None
    schedules: list[int] = []  # the schedules the result asked for, by id (decision 51)


class Notified(Event, tag="notified", frozen=True):
    id: int
    kind: str  # a NoticeKind, or edited_kind(...) for the answer to an edit
    chat_id: int
    telegram_message_id: int | None = None
    covers: list[int] = []  # a digest (decision 52): the promises it told


class InstructionsAdded(Event, tag="instructions_added", frozen=True):
    """The user added instructions to an open promise by replying to Valor's message about it.

    Recorded by the scheduler from a respond result.  Every later attempt has
    them in its input (``WorkItem.instructions``); an attempt already running
    gets them from the executor running it (Claude Code: written into its live
    session, then ``instructions_delivered``).
    """

    id: int
    text: str
    request_id: str = ""  # who asked, once per request: "respond:<respond promise id>:<command index>"
    by: str = ""  # e.g. "respond #41"
    message_id: int | None = None  # the chat message that carried them


class InputEdited(Event, tag="input_edited", frozen=True):
    """The chat message a promise answers was edited (decision 50).

    ``applied``: the promise had not been dispatched, and ``input`` (the message
    as it reads now) is its input from here on.  Otherwise the edit came too
    late for it, is kept for ``/why``, and the user is told how to run the new text.
    """

    id: int
    message_id: int
    edited_at: float = 0.0
    applied: bool = False
    input: Any = None
    title: str = ""  # the promise's title from the new text, when applied
    text: str = ""  # the new text, for the story and the notice


class RequestDeleted(Event, tag="request_deleted", frozen=True):
    """The chat message a promise answers was deleted (decision 50).

    ``cancelled``: it had not been dispatched, and a ``cancelled`` naming the
    deletion follows; otherwise nothing changes (work is not undone).
    """

    id: int
    message_id: int
    cancelled: bool = False


class InstructionsDelivered(Event, tag="instructions_delivered", frozen=True):
    """A running attempt took instructions in (Claude Code: the CLI acknowledged the message)."""

    id: int
    attempt: int
    request_id: str = ""  # of the ``instructions_added`` it delivered


class NoticeIntended(Event, tag="notice_intended", frozen=True):
    """The notifier is about to send a chat message (logged before sending).

    ``parts`` are digests of the message texts, in order, so a notifier that
    restarts between sending and ``notified`` can find what it already sent.
    """

    id: int
    kind: str  # a MessageKind, or edited_kind(...)
    chat_id: int
    reply_to: int | None = None
    parts: list[str] = []
    covers: list[int] = []  # a digest (decision 52): the promises it tells, this one among them


class NoticeFailed(Event, tag="notice_failed", frozen=True):
    """Telegram refused a notice for good: the chat cannot be reached (decision 52).

    ``reason`` is Telegram's answer (e.g. ``UserIsBlockedError``).  The notice is
    not tried again; neither is anything else for that chat until a new request
    comes from it (a respond promise created after this).  ``unsent`` is true when
    the notifier did not call Telegram because the chat was already known unreachable.
    """

    id: int
    kind: str
    chat_id: int
    reason: str = ""
    unsent: bool = False


# --- schedules (subject ``promise.<schedule id>.<event>``, ids shared with promises) ---


class ScheduleCreated(Event, tag="schedule_created", frozen=True):
    """A recurring promise (decision 51): every tick creates one promise from this template.

    Either ``cron`` (read on the wall clock of ``tz``) or ``every`` seconds from
    ``anchor``.  ``missed``: what a tick passed while nothing ran becomes (``skip``:
    skipped and told with the next run; ``catch_up_one``: one run stands for them all).
    ``overlap``: a tick while the previous run is open is skipped, queued behind it, or run.
    """

    id: int
    cron: str | None = None
    every: float | None = None
    tz: str = "UTC"
    anchor: float = 0.0
    title: str = ""
    task: str = "noop"
    input: Any = None
    queue: str | None = None
    priority: int = 5
    max_cost: float | None = None
    chat_id: int | None = None
    message_id: int | None = None  # the message that asked for it: every run replies to it
    missed: Missed = "skip"
    overlap: Overlap = "skip"
    request_id: str | None = None
    by: str = ""


class SchedulePaused(Event, tag="schedule_paused", frozen=True):
    id: int
    by: str = ""


class ScheduleResumed(Event, tag="schedule_resumed", frozen=True):
    """Ticks fire again from the next one after this; those passed while paused are not runs owed."""

    id: int
    by: str = ""


class ScheduleDeleted(Event, tag="schedule_deleted", frozen=True):
    id: int
    by: str = ""


class TicksSkipped(Event, tag="ticks_skipped", frozen=True):
    """Ticks of a schedule that will not run: missed while nothing ran, or the previous run still open."""

    id: int  # the schedule
    first: float
    last: float  # the schedule's ticks up to here are settled
    count: int = 1
    reason: SkipReason = "missed"


PromiseEvent = (
    Created
    | Approved
    | BudgetAdjusted
    | Dispatched
    | Started
    | Progress
    | Succeeded
    | AttemptFailed
    | AttemptStopped
    | RetryScheduled
    | Failed
    | Cancelled
    | Spawned
    | Notified
    | NoticeIntended
    | NoticeFailed
    | InstructionsAdded
    | InstructionsDelivered
    | InputEdited
    | RequestDeleted
    | ScheduleCreated
    | SchedulePaused
    | ScheduleResumed
    | ScheduleDeleted
    | TicksSkipped
)

SCHEDULE_EVENTS = (ScheduleCreated, SchedulePaused, ScheduleResumed, ScheduleDeleted, TicksSkipped)

TERMINAL = (Succeeded, Failed, Cancelled)

EVENT_NAMES: dict[type, str] = {
    cls: cls.__struct_config__.tag for cls in PromiseEvent.__args__  # type: ignore[attr-defined]
}

encoder = msgspec.json.Encoder()
promise_event_decoder = msgspec.json.Decoder(PromiseEvent)
message_decoder = msgspec.json.Decoder(MessageReceived)
chat_decoder = msgspec.json.Decoder(ChatEvent)


def encode(obj: msgspec.Struct) -> bytes:
    return encoder.encode(obj)


def decode_promise_event(data: bytes) -> PromiseEvent:
    return promise_event_decoder.decode(data)


def decode_message(data: bytes) -> MessageReceived:
    return message_decoder.decode(data)


def decode_chat(data: bytes) -> ChatEvent:
    """Anything on ``chat.<id>.in``: a message, an edit of one, a deletion, or what catch-up skipped."""
    return chat_decoder.decode(data)
