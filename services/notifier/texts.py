"""Every text the notifier sends, built only from recorded events.  Pure.

A terminal text comes from the promise's ``succeeded`` / ``failed`` /
``cancelled`` event alone (summary, duration, error, and the attempt's
recorded evidence in one line): it never claims more than the log says, and a
success whose last check failed says so instead of ✅.  Long texts are split at Telegram's 4,096 characters.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import msgspec

from schemas.commands import RespondResult
from schemas.events import Cancelled, Failed, Succeeded
from services.executor.respond import approval
from services.executor.respond.reply import reply_with_ids
from valor import evidence

from .board import Board, Item

LIMIT = 4096
SUMMARY_KEYS = ("summary", "reply", "text", "output", "stdout")


def split(text: str, limit: int = LIMIT) -> list[str]:
    """Parts of at most ``limit`` characters, cut after a newline where one is near the end."""
    parts: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", limit // 2, limit)
        cut = limit if cut == -1 else cut + 1
        parts.append(text[:cut])
        text = text[cut:]
    if text or not parts:
        parts.append(text)
    return parts


def digest(text: str) -> str:
    """How a sent part is recognised later (Telegram trims surrounding whitespace)."""
    return hashlib.sha256(text.strip().encode()).hexdigest()[:16]


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def summary(result: Any) -> str:
    if result is None:
        return ""
    if isinstance(result, str):
        return result
    if isinstance(result, dict):
        for key in SUMMARY_KEYS:
            if isinstance(result.get(key), str) and result[key].strip():
                return result[key]
    return json.dumps(result, ensure_ascii=False, default=str)


def label(item: Item) -> str:
    title = item.spec.title or item.spec.task
    return f"#{item.id} {title}"


def terminal(item: Item, board: Board) -> str:
    end = item.end
    if item.respond:
        return respond_terminal(item, board)
    proof = evidence.brief(item.evidence)
    match end:
        case Succeeded():
            failed = evidence.check_failed(item.evidence)
            if failed is not None:
                text = (f"⚠️ {label(item)} — done in {duration(end.duration)}, but its check failed: "
                        f"`{evidence.clip(failed.command)}` exited {failed.exit_code}")
            else:
                text = f"✅ {label(item)} — done in {duration(end.duration)}"
            return "\n\n".join(part for part in (text, summary(end.result), proof) if part)
        case Failed():
            took = f" after {duration(end.at - item.started_at)}" if item.started_at and end.at else ""
            text = f"❌ {label(item)} — failed{took}: {end.reason}"
            return f"{text}\n\n{proof}" if proof else text
        case Cancelled():
            return f"🚫 {label(item)} — cancelled: {end.reason}"
    raise ValueError(f"#{item.id} has not ended")


def respond_terminal(item: Item, board: Board) -> str:
    end = item.end
    match end:
        case Failed():
            return f"❌ I could not answer this (#{item.id}): {end.reason}"
        case Cancelled():
            return f"🚫 Answering this was cancelled (#{item.id}): {end.reason}"
    result = _respond_result(end.result)
    held = [c.spec for c in board.children(item) if c is not None and c.spec.awaits_approval]
    if held:  # the plan itself, with how to answer, instead of the list of ids
        lines = [result.reply.strip(), approval.prompt(held)]
    else:
        lines = [reply_with_ids(result.reply.strip(), item.spawned.children if item.spawned else {}, result.promises)]
    if item.spawned is not None and item.spawned.error:
        lines.append(f"⚠️ The promised work could not start: {item.spawned.error}")
    return "\n\n".join(line for line in lines if line) or "✅ Done."


def _respond_result(result: Any) -> RespondResult:
    try:
        return msgspec.convert(result, RespondResult)
    except msgspec.ValidationError:
        return RespondResult(reply=summary(result))


def status(item: Item) -> str:
    """The one status message of a background promise, edited in place."""
    end = item.end
    match end:
        case Succeeded() if evidence.check_failed(item.evidence):
            return f"⚠️ {label(item)}: done in {duration(end.duration)}, its check failed"
        case Succeeded():
            return f"✅ {label(item)}: done in {duration(end.duration)}"
        case Failed():
            return f"❌ {label(item)}: failed"
        case Cancelled():
            return f"🚫 {label(item)}: cancelled"
    if item.retrying:
        return f"🔁 {label(item)}: attempt {item.attempt} failed ({item.retrying[:200]}); retrying"
    text = f"⏳ {label(item)}: {item.progress or 'running'}"
    if item.fraction is not None:
        text += f" ({item.fraction:.0%})"
    return text
