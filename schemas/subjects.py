"""Every subject, stream, bucket and message-id scheme in one place.

Subjects read like sentences: ``promise.12.succeeded``, ``chat.42.in``,
``work.default``, ``cmd.submit``, ``dlq.promise``.  Message ids are derived from
their cause so a publish retried after a crash is absorbed by the stream's
duplicate window.
"""

from __future__ import annotations

CHAT = "CHAT"
PROMISES = "PROMISES"
WORK = "WORK"
COMMANDS = "COMMANDS"
DLQ = "DLQ"

LEASE_BUCKET = "valor_scheduler"
LEASE_KEY = "leader"
EXECUTORS_BUCKET = "valor_executors"
SNAPSHOTS_BUCKET = "valor_snapshots"  # an object store: projection snapshots

ALL_PROMISE_EVENTS = "promise.*.*"
PROMISE_CANCELLED = "promise.*.cancelled"
PROMISE_INSTRUCTIONS = "promise.*.instructions_added"


def chat_in(chat_id: int) -> str:
    return f"chat.{chat_id}.in"


def promise(promise_id: int, event_name: str) -> str:
    return f"promise.{promise_id}.{event_name}"


def promise_all(promise_id: int) -> str:
    return f"promise.{promise_id}.*"


def work(queue: str) -> str:
    return f"work.{queue}"


def command(verb: str) -> str:
    return f"cmd.{verb}"


def dead_letter(origin: str) -> str:
    return f"dlq.{origin}"


def promise_id_of(subject: str) -> int | None:
    parts = subject.split(".")
    if len(parts) == 3 and parts[0] == "promise" and parts[1].isdigit():
        return int(parts[1])
    return None


# --- message ids --------------------------------------------------------------


def msg_id_for_message(chat_id: int, message_id: int) -> str:
    return f"tg:{chat_id}:{message_id}"


def msg_id_for_edit(chat_id: int, message_id: int, edited_at: float) -> str:
    """One edit of a message: Telegram's edit date tells it from the next (whole seconds, as Telegram has them)."""
    return f"tg:{chat_id}:{message_id}:edit:{int(edited_at)}"


def msg_id_for_deletion(chat_id: int, message_ids: list[int]) -> str:
    ids = sorted(message_ids)
    return f"tg:{chat_id}:deleted:{ids[0] if ids else 0}-{ids[-1] if ids else 0}:{len(ids)}"


def msg_id_for_gap(chat_id: int, until: float) -> str:
    """One gap notice per chat and minute: Telegram reporting the same gap again (a restart) is stored once."""
    return f"tg:{chat_id}:gap:{int(until // 60)}"


def msg_id_for_skipped(chat_id: int, first_id: int, last_id: int) -> str:
    """One summary per chat and skipped range: a catch-up that re-reads the range stores it once."""
    return f"tg:{chat_id}:skipped:{first_id}-{last_id}"


def msg_id_for_event(promise_id: int, name: str, *parts: object) -> str:
    return ":".join([str(promise_id), name, *map(str, parts)])


def msg_id_for_work(promise_id: int, attempt: int) -> str:
    return f"{promise_id}:work:{attempt}"
