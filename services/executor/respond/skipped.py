"""The reply to catch-up's ``messages_skipped`` (decision 54).  Pure, no model.

Messages older than ``catchup_horizon`` when Valor came back are not acted on:
this says how many, when, quotes the first few, and asks to resend what is
still wanted, or to reply "run them" (the scheduler then makes each kept
message a request as if it had just arrived; ``ran`` answers the reply).
Dates are UTC, as Telegram stores them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from schemas.commands import RespondResult
from schemas.events import MessageReceived, MessagesSkipped
from services.scheduler.intake import runs_them

from .view import ChatView

TAG = "messages_skipped"


def is_skipped(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") == TAG


def reply(fact: MessagesSkipped) -> RespondResult:
    n = fact.count
    days = round(fact.horizon / 86400) if fact.horizon else 0
    age = f" (older than {days} day{'s' if days != 1 else ''})" if days else ""
    first, last = _day(fact.oldest), _day(fact.newest)
    when = f"on {first}" if first == last else f"between {first} and {last}"
    what = "a message" if n == 1 else f"{n} messages"
    lines = [f"While I was away you sent {what} {when} that {'is' if n == 1 else 'are'} too old "
             f"for me to act on{age}:"]
    lines += [f"• {text}" for text in fact.texts]
    if n > len(fact.texts):
        lines.append(f"• … and {n - len(fact.texts)} more")
    kept = len(fact.messages)
    if not kept:
        lines.append("Resend the ones you still want.")
    else:
        which = "it" if n == 1 else "them all" if kept == n else f"the first {kept}"
        lines.append(f'Reply "run them" to this message to run {which}, or resend the ones you still want.')
    return RespondResult(reply="\n".join(lines))


def ran(msg: MessageReceived, view: ChatView | None) -> RespondResult | None:
    """The answer to a "run them" reply to a summary: the scheduler has made the skipped ones requests."""
    if msg.reply_to is None or view is None or not runs_them(msg.text):
        return None
    summary = view.about(msg.reply_to)
    if summary is None or not is_skipped(summary.spec.input):
        return None
    n = len(summary.spec.input.get("messages") or [])
    if not n:
        return RespondResult(reply="I kept none of those messages whole: resend the ones you still want.")
    what = "the message" if n == 1 else f"the {n} messages"
    return RespondResult(reply=f"Running {what} skipped while I was away: each gets its own answer.")


def answer(value: dict) -> RespondResult:
    return reply(msgspec.convert(value, MessagesSkipped))


def _day(at: float) -> str:
    return f"{datetime.fromtimestamp(at, UTC):%-d %b}"
