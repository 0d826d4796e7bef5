"""Recorded event lists and views for the pure agent tests."""

from __future__ import annotations

from schemas.events import (
    AttemptFailed,
    Cancelled,
    Created,
    Dispatched,
    Failed,
    MessageReceived,
    RetryScheduled,
    Started,
    Succeeded,
)
from services.executor.respond.view import ChatView, chat_view

CHAT = 7


def message(text: str, chat_id: int = CHAT, message_id: int = 100, sender_name: str = "Ana") -> MessageReceived:
    return MessageReceived(chat_id=chat_id, message_id=message_id, sender_id=1, sender_name=sender_name, text=text)


def view_of(*events, chat_id: int = CHAT) -> ChatView:
    return chat_view(list(enumerate(events, 1)), chat_id)


def failed_after_retries(pid: int = 12) -> list:
    """A fail task that failed on all three attempts."""
    return [
        Created(at=100.0, id=pid, title="flaky job", task="fail", chat_id=CHAT, max_attempts=3, parent_id=10,
                name="job"),
        Dispatched(at=100.1, id=pid, attempt=1),
        Started(at=100.2, id=pid, attempt=1, executor="exec-1"),
        AttemptFailed(at=100.5, id=pid, attempt=1, error="connection refused: db:5432"),
        RetryScheduled(at=100.6, id=pid, next_attempt=2, not_before=101.6, delay=1.0),
        Dispatched(at=101.6, id=pid, attempt=2),
        Started(at=101.7, id=pid, attempt=2, executor="exec-2"),
        AttemptFailed(at=102.0, id=pid, attempt=2, error="connection refused: db:5432"),
        RetryScheduled(at=102.1, id=pid, next_attempt=3, not_before=104.1, delay=2.0),
        Dispatched(at=104.1, id=pid, attempt=3),
        Started(at=104.2, id=pid, attempt=3, executor="exec-1"),
        AttemptFailed(at=104.5, id=pid, attempt=3, error="connection refused: db:5432"),
        Failed(at=104.6, id=pid, attempt=3, reason="connection refused: db:5432 (after 3 attempts)"),
    ]


def cancelled_by_failed_dependency(pid: int = 13, dep: int = 12) -> list:
    return [
        Created(at=100.0, id=pid, title="run the tests", task="code", chat_id=CHAT, depends_on=[dep],
                parent_id=10, name="run"),
        Cancelled(at=104.6, id=pid, by="scheduler", cause_id=dep,
                  reason=f"dependency #{dep} failed: connection refused: db:5432 (after 3 attempts)"),
    ]


def succeeded(pid: int, title: str = "done thing", task: str = "echo", result=None, chat_id: int = CHAT) -> list:
    return [
        Created(at=50.0, id=pid, title=title, task=task, chat_id=chat_id),
        Dispatched(at=50.1, id=pid, attempt=1),
        Started(at=50.2, id=pid, attempt=1, executor="exec-1"),
        Succeeded(at=50.3, id=pid, attempt=1, result=result if result is not None else {"ok": True}, duration=0.1),
    ]


def running(pid: int, title: str = "long thing", task: str = "sleep", chat_id: int = CHAT) -> list:
    return [
        Created(at=60.0, id=pid, title=title, task=task, chat_id=chat_id),
        Dispatched(at=60.1, id=pid, attempt=1),
        Started(at=60.2, id=pid, attempt=1, executor="exec-1"),
    ]
