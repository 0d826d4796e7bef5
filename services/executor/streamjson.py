"""Claude Code's ``--output-format stream-json`` read as a fold: lines in, progress texts and a result out.

Pure: no I/O, no clock.  One JSON object per line; the kinds that matter are
``system`` (``init`` carries the session id), ``assistant`` (its ``tool_use``
blocks become progress texts such as "Editing auth.py") and the final
``result``.  Anything else, and any line that is not JSON, is skipped: the
CLI adds event kinds between versions.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, replace
from typing import Any

COMMAND_CHARS = 60
PATTERN_CHARS = 60


@dataclass(frozen=True)
class Outcome:
    """The final ``result`` line."""

    text: str
    is_error: bool
    subtype: str = "success"
    cost_usd: float | None = None
    session_id: str | None = None
    turns: int | None = None
    duration_ms: int | None = None

    def as_result(self) -> dict[str, Any]:
        return {"text": self.text, "cost_usd": self.cost_usd, "session_id": self.session_id,
                "turns": self.turns, "duration_ms": self.duration_ms}


@dataclass(frozen=True)
class Stream:
    session_id: str | None = None
    last_text: str = ""  # the last assistant text seen, for an error without a result line
    outcome: Outcome | None = None


def decode(line: bytes | str) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    return event if isinstance(event, dict) else None


def step(stream: Stream, line: bytes | str) -> tuple[Stream, list[str]]:
    """Fold one stdout line into the stream; returns the new stream and its progress texts."""
    event = decode(line)
    if event is None:
        return stream, []
    kind = event.get("type")
    if kind == "system" and event.get("subtype") == "init":
        return replace(stream, session_id=_str(event.get("session_id")) or stream.session_id), []
    if kind == "assistant":
        blocks = _blocks(event)
        texts = [b.get("text") for b in blocks if b.get("type") == "text" and isinstance(b.get("text"), str)]
        progress = [p for b in blocks if b.get("type") == "tool_use" and (p := tool_progress(b))]
        return (replace(stream, last_text=texts[-1]) if texts else stream), progress
    if kind == "result":
        return replace(stream, outcome=outcome(event, stream)), []
    return stream, []


def outcome(event: dict[str, Any], stream: Stream = Stream()) -> Outcome:
    subtype = _str(event.get("subtype")) or "success"
    text = event.get("result")
    if not isinstance(text, str):
        text = "" if subtype == "success" else subtype.replace("_", " ")
    is_error = bool(event.get("is_error")) or subtype != "success"
    return Outcome(
        text=text,
        is_error=is_error,
        subtype=subtype,
        cost_usd=_number(event.get("total_cost_usd")),
        session_id=_str(event.get("session_id")) or stream.session_id,
        turns=_int(event.get("num_turns")),
        duration_ms=_int(event.get("duration_ms")),
    )


def tool_progress(block: dict[str, Any]) -> str | None:
    """What a tool call looks like to someone watching: "Editing auth.py", "Running pytest -q"."""
    name = block.get("name")
    if not isinstance(name, str) or not name:
        return None
    args = block.get("input") if isinstance(block.get("input"), dict) else {}
    if name in ("Write", "Edit", "MultiEdit", "NotebookEdit"):
        path = args.get("file_path") or args.get("notebook_path")
        return f"Editing {_base(path)}" if path else "Editing files"
    if name == "Read":
        path = args.get("file_path")
        return f"Reading {_base(path)}" if path else "Reading files"
    if name == "Bash":
        command = " ".join(str(args.get("command") or "").split())
        return f"Running {_clip(command, COMMAND_CHARS)}" if command else "Running a command"
    if name in ("Grep", "Glob"):
        pattern = args.get("pattern")
        return f"Searching {_clip(str(pattern), PATTERN_CHARS)}" if pattern else "Searching"
    return f"Using {name}"


def _blocks(event: dict[str, Any]) -> list[dict[str, Any]]:
    message = event.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _base(path: Any) -> str:
    text = str(path).rstrip("/")
    return posixpath.basename(text) or text


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class Throttle:
    """At most one progress text per ``every`` seconds; the latest text held back is sent when due.

    Time comes in as an argument, so the rule is tested without waiting.
    """

    def __init__(self, every: float = 1.0):
        self.every = every
        self.last_at = float("-inf")
        self.pending: str | None = None

    def offer(self, text: str, now: float) -> str | None:
        """The text to send now, or None if it waits (replacing any older waiting text)."""
        if now - self.last_at >= self.every:
            self.last_at, self.pending = now, None
            return text
        self.pending = text
        return None

    def due(self, now: float) -> str | None:
        """The waiting text if its time has come."""
        if self.pending is not None and now - self.last_at >= self.every:
            text, self.pending, self.last_at = self.pending, None, now
            return text
        return None

    def wait(self, now: float) -> float | None:
        """Seconds until the waiting text is due; None if nothing waits."""
        return None if self.pending is None else max(0.0, self.last_at + self.every - now)
