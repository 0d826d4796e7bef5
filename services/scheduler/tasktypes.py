"""Defaults per task type: queue, timeout and retry policy.

A submitted task may override each of them.  The agent issue's ``valor.toml``
extends this table; the engine ships the built-in types.
"""

from __future__ import annotations

import msgspec


class TaskType(msgspec.Struct, frozen=True, kw_only=True):
    queue: str = "default"
    timeout: float | None = None
    retries: int = 0
    backoff: float = 1.0
    backoff_factor: float = 2.0
    backoff_max: float = 300.0
    jitter: float = 0.1


BUILTIN: dict[str, TaskType] = {
    "noop": TaskType(),
    "echo": TaskType(),
    "sleep": TaskType(),
    "fail": TaskType(),
    "shell": TaskType(timeout=600),
    # The agent answers messages on its own queue so background work never delays a reply.
    "respond": TaskType(queue="respond", timeout=300, retries=2, backoff=2.0),
}
