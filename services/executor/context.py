"""What a handler sees of an attempt, and how it says it failed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from schemas.commands import WorkItem
from schemas.events import Evidence

from .instructions import Instructions

ProgressFn = Callable[[str, "float | None"], Awaitable[None]]


class TaskFailed(Exception):
    """Raised by a handler to fail the attempt with a readable error (its evidence is ``ctx.evidence``)."""

    def __init__(self, error: str, retryable: bool = True):
        super().__init__(error)
        self.error = error
        self.retryable = retryable


async def _no_progress(text: str, fraction: float | None = None) -> None:
    return None


@dataclass
class AttemptContext:
    id: int
    attempt: int
    task: str
    title: str = ""
    input: Any = None
    deps: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    chat_id: int | None = None
    message_id: int | None = None
    resume_session: str | None = None  # Claude Code: the session this attempt continues
    executor: str = ""
    delivery: int = 1
    max_cost: float | None = None  # USD this attempt may spend (decision 47)
    _progress: ProgressFn = _no_progress
    # What the attempt did, set by handlers that can tell (Claude Code); recorded with its end,
    # whichever end it is: succeeded, failed, timed out.
    evidence: Evidence | None = None
    # What the user added since the promise was created: before it started, and while it runs.
    instructions: Instructions = field(default_factory=Instructions)

    @classmethod
    def of(cls, item: WorkItem, executor: str = "", delivery: int = 1, progress: ProgressFn | None = None,
           instructions: Instructions | None = None):
        return cls(
            id=item.id,
            attempt=item.attempt,
            task=item.task,
            title=item.title,
            input=item.input,
            deps=dict(item.deps),
            timeout=item.timeout,
            chat_id=item.chat_id,
            message_id=item.message_id,
            resume_session=item.resume_session,
            executor=executor,
            delivery=delivery,
            max_cost=item.max_cost,
            _progress=progress or _no_progress,
            instructions=instructions if instructions is not None else Instructions(item.instructions),
        )

    async def progress(self, text: str, fraction: float | None = None) -> None:
        """Report progress; throttled and best effort, it never fails the attempt."""
        await self._progress(text, fraction)


Handler = Callable[[AttemptContext], Awaitable[Any]]
