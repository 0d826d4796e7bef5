"""Stream messages -> table rows.  Pure: no NATS, no DuckDB, no clock.

A message the schemas refuse still becomes a row (type ``undecodable``, the
decode error in ``error``) so the copy never stalls on it; the fold skips it.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import msgspec

from schemas import subjects
from schemas.events import decode_message, decode_promise_event
from valor import bus


class Raw(NamedTuple):
    """One stored stream message, as read from JetStream."""

    seq: int
    subject: str
    data: bytes
    headers: dict[str, str]
    stored_at: float  # POSIX seconds


def _ts(value: float | None) -> float | None:
    """Times default to 0.0 in the schemas: 0 means not recorded."""
    return value if value else None


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _json_or_none(data: bytes) -> str | None:
    try:
        json.loads(data)
    except ValueError:
        return None
    return _text(data)


def event_row(m: Raw) -> tuple:
    """A row of ``events`` (column order: tables.COLUMNS['events'])."""
    msg_id = m.headers.get(bus.MSG_ID)
    try:
        e = decode_promise_event(m.data)
    except msgspec.DecodeError as exc:
        return (m.seq, m.subject, subjects.promise_id_of(m.subject), "undecodable", None, None, None, None,
                str(exc), msg_id, m.stored_at, _json_or_none(m.data))
    name = e.__struct_config__.tag
    error = getattr(e, "error", None) or getattr(e, "reason", None)
    attempt = getattr(e, "attempt", None)
    if attempt is None:
        attempt = getattr(e, "next_attempt", None)
    duration = getattr(e, "duration", None)
    return (m.seq, m.subject, e.id, name, _ts(e.at), attempt, getattr(e, "executor", None),
            duration, error, msg_id, m.stored_at, _text(m.data))


def message_row(m: Raw) -> tuple | None:
    """A row of ``messages``, or None for a message the schema refuses (it is in the DLQ)."""
    try:
        msg = decode_message(m.data)
    except msgspec.DecodeError:
        return None
    return (m.seq, msg.chat_id, msg.message_id, msg.sender_id, msg.sender_name, msg.text, msg.reply_to,
            msg.chat_kind, msg.mentioned, msg.caught_up, _ts(msg.sent_at), _ts(msg.at), m.stored_at,
            _text(m.data))


def dead_letter_row(m: Raw) -> tuple:
    h = m.headers
    origin_seq: Any = h.get(bus.ORIGIN_SEQ)
    origin_seq = int(origin_seq) if origin_seq and origin_seq.isdigit() else None
    return (m.seq, m.subject, m.subject.removeprefix("dlq."), h.get(bus.REASON), h.get(bus.ORIGIN_SUBJECT),
            h.get(bus.ORIGIN_STREAM), origin_seq, m.stored_at, len(m.data), _text(m.data))


ROW_BUILDERS = {"PROMISES": event_row, "CHAT": message_row, "DLQ": dead_letter_row}
