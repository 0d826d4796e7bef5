"""Continuing a Claude Code promise: which session a continuation resumes, or why it cannot.

Pure.  A promise that ``continues`` another runs the Claude Code CLI with
``--resume <session>``, so it sees the earlier turns.  The scheduler resolves
the session once, when it creates the continuation, and records it in
``created`` (``resume_session``): replays, restarts and retries read it from
there and never look it up again.  The respond agent asks the same question
first, so a chat hears the reason in its reply instead of from a refused plan.

``session_of`` is the one place that says where a run's session id is read
from; everything else goes through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from .plan import PlanError
from .projection import Promise
from .states import State


class TaskType(Protocol):
    handler: str


class Config(Protocol):
    """What continuing reads of the configuration (``valor.config.Config`` has it): each task type's handler."""

    @property
    def types(self) -> Mapping[str, TaskType]: ...


class CannotContinue(PlanError):
    """A sentence a user can act on; as a PlanError, the plan that asked for it creates nothing."""


def session_of(p: Promise) -> str | None:
    """The Claude Code session a promise's last run left behind, as its evidence records it.

    A failed or timed-out run has one too, so it can be continued ("try again,
    the test is in tests/").  Results of logs older than evidence carry it as
    ``session_id``.
    """
    if p.evidence is not None and p.evidence.session_id:
        return p.evidence.session_id
    if p.status != State.SUCCEEDED or not isinstance(p.result, dict):
        return None
    session = p.result.get("session_id")
    return session if isinstance(session, str) and session else None


def claude_types(config: Config) -> list[str]:
    return sorted(name for name, t in config.types.items() if t.handler == "claude")


def is_claude(p: Promise, config: Config) -> bool:
    t = config.types.get(p.spec.task)
    return t is not None and t.handler == "claude"


def session_to_resume(target: Promise | None, target_id: int, chat_id: int | None, type_: str | None,
                      config: Config) -> str:
    """The session a continuation of promise ``target_id`` resumes; raises CannotContinue saying why not.

    ``chat_id`` and ``type_`` are the continuation's: it must come from the
    same chat (its workspace, where the CLI keeps the session) and be of the
    same type (so the same concurrency key holds); ``type_`` None skips that
    check for a caller that takes the type from the target.
    """
    if target is None:
        raise CannotContinue(f"there is no promise #{target_id}")
    label = f"#{target.id}"
    if target.spec.chat_id != chat_id:
        raise CannotContinue(f"{label} belongs to another chat")
    if not is_claude(target, config):
        kinds = ", ".join(claude_types(config))
        raise CannotContinue(f"{label} is a {target.spec.task} task; only Claude Code tasks ({kinds}) have a "
                             "session to continue")
    if type_ is not None and type_ != target.spec.task:
        raise CannotContinue(f"a continuation of {label} must be a {target.spec.task} task like it, not {type_}")
    if not target.terminal:
        raise CannotContinue(f"{label} is still {target.state}; it can be continued once it has ended")
    session = session_of(target)
    if session is None:
        ended = "was cancelled" if target.state == State.CANCELLED else target.state
        raise CannotContinue(f"{label} {ended} without a recorded Claude Code session, so there is nothing "
                             "to resume")
    return session
