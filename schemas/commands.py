"""Requests (not facts) and the records exchanged between services.

Commands arrive on ``COMMANDS`` (``cmd.<verb>``); the scheduler answers each on
its ``reply_to`` subject once the resulting events are stored.  A work item is
what the scheduler hands to executors on ``WORK``.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from schemas.events import InstructionsAdded, Missed, Overlap

ScheduleVerb = Literal["pause", "resume", "delete"]
# What a respond result may ask of the scheduler besides new promises (pause, resume, unschedule: a schedule).
RespondVerb = Literal["cancel", "retry", "instruct", "approve", "reject", "budget", "pause", "resume", "unschedule"]


class NewPromise(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One promise asked for, before it has an id.

    ``after`` names other tasks of the same plan; ``depends_on`` names existing
    promise ids.  Fields left ``None`` take the task type's defaults.
    ``continues`` names an ended Claude Code promise of the same chat and type
    whose session this one resumes (the scheduler records which session).
    """

    title: str = ""
    type: str = "noop"
    input: Any = None
    name: str | None = None
    after: list[str] = []
    depends_on: list[int] = []
    priority: int = 5
    queue: str | None = None
    key: str | None = None
    key_limit: int = 1
    delay: float | None = None  # seconds from submission
    not_before: float | None = None  # absolute time; wins over delay
    timeout: float | None = None
    retries: int | None = None
    backoff: float | None = None
    continues: int | None = None
    max_cost: float | None = None  # USD per attempt; None: the type's max_cost


class Command(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", omit_defaults=True):
    request_id: str
    reply_to: str | None = None
    by: str = "cli"


class Submit(Command, tag="submit", frozen=True):
    """One or more promises; ``plan`` is a submit whose tasks name each other."""

    tasks: list[NewPromise]


class Cancel(Command, tag="cancel", frozen=True):
    id: int
    reason: str = ""


class Retry(Command, tag="retry", frozen=True):
    id: int


class Approve(Command, tag="approve", frozen=True):
    """Let a plan that awaits approval run; ``id`` is any of its steps (or the respond promise that made it)."""

    id: int
    reason: str = ""


class Reject(Command, tag="reject", frozen=True):
    """Cancel every step of a plan that awaits approval, naming the refusal."""

    id: int
    reason: str = ""


class Schedule(Command, tag="schedule", frozen=True):
    """A recurring promise: ``task`` is the template every tick creates (decision 51)."""

    task: NewPromise
    cron: str | None = None
    every: float | None = None  # seconds; ticks at now + k * every
    tz: str = "UTC"
    missed: Missed = "skip"
    overlap: Overlap = "skip"
    chat_id: int | None = None
    message_id: int | None = None


class ScheduleChange(Command, tag="schedule_change", frozen=True):
    id: int
    verb: ScheduleVerb
    chat_id: int | None = None  # asked from this chat: only its own schedules


AnyCommand = Submit | Cancel | Retry | Approve | Reject | Schedule | ScheduleChange


class CommandReply(msgspec.Struct, kw_only=True, omit_defaults=True):
    ok: bool
    ids: dict[str, int] = {}  # task name (or "0", "1", ... by position) -> id
    error: str | None = None


class WorkItem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An attempt to run, published on ``work.<queue>``."""

    id: int
    attempt: int
    task: str
    title: str = ""
    input: Any = None
    deps: dict[str, Any] = {}  # "<dep id>" -> its recorded result
    timeout: float | None = None
    chat_id: int | None = None
    message_id: int | None = None
    resume_session: str | None = None  # Claude Code: resume this session (``--resume``)
    max_cost: float | None = None  # USD this attempt may spend (Claude Code: --max-budget-usd, and enforced)
    instructions: list[InstructionsAdded] = []  # added by the user since the promise was created


class RespondCommand(msgspec.Struct, frozen=True, kw_only=True):
    """An operator command inside a respond result, e.g. cancel #12."""

    verb: RespondVerb
    id: int  # the promise (pause, resume, unschedule: the schedule) it is about (budget: unused)
    reason: str = ""
    text: str = ""  # instruct: the instructions to add; budget: "+5 today", "reset"


class NewSchedule(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A schedule asked for in a chat: the fields of a ``Schedule`` command but the chat's (decision 51)."""

    task: NewPromise
    cron: str | None = None
    every: float | None = None
    tz: str = "UTC"
    missed: Missed = "skip"
    overlap: Overlap = "skip"


class RespondResult(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What the agent answered to a message (the result of a respond promise).

    Recorded as ``succeeded.result`` (a JSON object); readers take it back with
    ``read_respond_result``, never by looking at its keys.
    """

    reply: str = ""
    promises: list[NewPromise] = []
    commands: list[RespondCommand] = []
    schedules: list[NewSchedule] = []  # created answering this message: each run replies to it

    @property
    def asks_for_anything(self) -> bool:
        return bool(self.promises or self.commands or self.schedules)


class UnreadableResult(ValueError):
    """A respond promise's recorded result that is not a ``RespondResult``: why, in msgspec's words."""


def read_respond_result(result: Any) -> RespondResult:
    """A respond promise's recorded result as its Struct; no result is an empty answer.

    Raises ``UnreadableResult`` for anything else (a JSON object whose fields do
    not fit, or not an object at all).
    """
    if result is None:
        return RespondResult()
    try:
        return msgspec.convert(result, RespondResult)
    except msgspec.ValidationError as exc:
        raise UnreadableResult(str(exc)) from None


def read_answer(result: Any) -> tuple[RespondResult | None, bool]:
    """A respond promise's recorded result, read once: (the answer or None when unreadable, whether it asks).

    It asks when the scheduler has something to do for it, and so records
    ``spawned`` exactly then: an answer with promises, commands or schedules,
    and an object that cannot be read (``spawned`` then says why, and the chat
    hears of it).  A result that is no object at all was never an answer.
    """
    if not isinstance(result, dict):
        return None, False
    try:
        answer = read_respond_result(result)
    except UnreadableResult:
        return None, True
    return answer, answer.asks_for_anything


def asks_for_anything(result: Any) -> bool:
    """Whether a recorded respond result asks the scheduler for something (``read_answer``)."""
    return read_answer(result)[1]


class SlotPool(msgspec.Struct, frozen=True, kw_only=True):
    """Slots only attempts of ``queues`` take: a queue's own when it is the only one, else shared."""

    queues: list[str]
    slots: int
    busy: int = 0


class ExecutorHeartbeat(msgspec.Struct, frozen=True, kw_only=True):
    """Kept in the ``valor_executors`` KV bucket under the executor id (TTL).

    ``slots`` and ``busy`` are the executor's totals; ``pools`` says how they are
    split between its queues.  A heartbeat without pools (an executor from before
    they existed) is one pool shared by all its queues.
    """

    executor: str
    queues: list[str]
    slots: int
    busy: int = 0
    host: str = ""
    pid: int = 0
    at: float = 0.0
    pools: list[SlotPool] = []

    def slot_pools(self) -> list[SlotPool]:
        return self.pools or [SlotPool(queues=list(self.queues), slots=self.slots, busy=self.busy)]


command_decoder = msgspec.json.Decoder(AnyCommand)
reply_decoder = msgspec.json.Decoder(CommandReply)
work_decoder = msgspec.json.Decoder(WorkItem)
heartbeat_decoder = msgspec.json.Decoder(ExecutorHeartbeat)
