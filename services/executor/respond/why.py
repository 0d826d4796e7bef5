"""``/why 12``: what happened to a promise, told from its events.

Pure: a function of the promise's events in log order.  The events are folded
with the scheduler's own projection, so an event the fold ignores (a late
duplicate, a result after the promise was cancelled) is left out of the story
too, and the headline is the state every other reader sees.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from schemas.events import (
    Approved,
    AttemptFailed,
    AttemptStopped,
    BudgetAdjusted,
    Cancelled,
    Created,
    Failed,
    InputEdited,
    InstructionsAdded,
    InstructionsDelivered,
    PromiseEvent,
    RequestDeleted,
    RetryScheduled,
    Spawned,
    Started,
    Succeeded,
)
from services.scheduler.projection import Projection, Promise
from valor import budget, evidence


def explain(events: Sequence[PromiseEvent]) -> str:
    created = next((e for e in events if isinstance(e, Created)), None)
    if created is None:
        return "I have no record of that promise."
    state = Projection()
    story: list[str] = []
    added: dict[str, str] = {}  # request id -> the instructions' text
    for e in events:
        if getattr(e, "id", None) != created.id:
            continue
        when = _moment(state.promises.get(created.id))
        if isinstance(e, InstructionsAdded):
            added[e.request_id] = e.text
        if state.apply(e):
            line = _line(e, created.at, when, added)
            if line:
                story.append(line)
            if isinstance(e, Succeeded | AttemptFailed | AttemptStopped) and e.evidence is not None:
                story += ["    " + fact for fact in evidence.lines(e.evidence)]
    p = state.promises[created.id]
    out = [headline(p)]
    if p.progress and not p.terminal:
        out.append(f"Last progress: {p.progress}")
    return "\n".join(out + story)


def headline(p: Promise) -> str:
    s = p.spec
    what = f"#{p.id} {s.task} \"{short(s.title, 60)}\""
    attempts = f"{p.attempt} attempt{'s' if p.attempt != 1 else ''}"
    match p.state:
        case "succeeded":
            return f"{what} succeeded on attempt {p.attempt}."
        case "failed":
            return f"{what} failed after {attempts}: {p.error}"
        case "cancelled":
            tail = f" after {attempts}" if p.attempt else " before it started"
            return f"{what} was cancelled{tail}: {p.error}"
        case "running":
            return f"{what} is running (attempt {p.attempt} of {s.max_attempts})."
        case "retrying":
            return f"{what} is waiting to retry (attempt {p.attempt} of {s.max_attempts} failed)."
        case "awaiting_approval":
            return f"{what} is waiting for approval ({s.awaits_approval})."
        case "waiting" if p.pending_deps:
            return f"{what} is waiting for {', '.join(f'#{d}' for d in s.depends_on)}."
        case "waiting":
            return f"{what} is waiting for its start time."
    return f"{what} is {p.state}."


def _moment(p: Promise | None) -> str:
    """Where instructions added now go, told in the story."""
    if p is not None and p.state == "running":
        return "while it ran, for the running attempt"
    if p is None or p.started_at is None:
        return "before it started; they join its input"
    return "between attempts; they join the next one's input"


def _line(e: PromiseEvent, t0: float, when: str = "", added: dict[str, str] | None = None) -> str | None:
    at = f"{elapsed(e.at - t0)} "
    match e:
        case Created():
            origin = f" by #{e.parent_id}" if e.parent_id else ""
            if e.name:
                origin += f" as step '{e.name}'"
            after = f", after {', '.join(f'#{d}' for d in e.depends_on)}" if e.depends_on else ""
            later = f", not before {elapsed(e.not_before - e.at)}" if e.not_before else ""
            retry = f", retrying #{e.retry_of}" if e.retry_of else ""
            retry += f", continuing #{e.continues} in its session" if e.continues else ""
            tries = f"; up to {e.max_attempts} attempts" if e.max_attempts > 1 else ""
            held = f"; awaiting approval ({e.awaits_approval})" if e.awaits_approval else ""
            return f"{at}created{origin}{after}{later}{retry}{tries}{held}"
        case Approved():
            return f"{at}approved by {e.by or 'someone'}" + (f": {e.reason}" if e.reason else "")
        case BudgetAdjusted():
            return f"{at}{e.by or 'someone'} {budget.describe(e)}"
        case Started():
            again = f" (resumed, delivery {e.delivery})" if e.delivery > 1 else ""
            return f"{at}attempt {e.attempt} started on {e.executor or 'an executor'}{again}"
        case AttemptFailed():
            kind = "" if e.retryable else " (not retryable)"
            return f"{at}attempt {e.attempt} failed{kind}: {e.error}"
        case AttemptStopped():
            return f"{at}attempt {e.attempt} stopped: {e.reason}"
        case RetryScheduled():
            return f"{at}attempt {e.next_attempt} scheduled in {e.delay:.1f}s"
        case Failed():
            return f"{at}failed: {e.reason}"
        case Cancelled():
            by = "the scheduler" if e.by == "scheduler" else (e.by or "someone")
            cause = f" (because #{e.cause_id} ended)" if e.cause_id else ""
            return f"{at}cancelled by {by}{cause}: {e.reason}"
        case Succeeded():
            return f"{at}succeeded on attempt {e.attempt} in {e.duration:.1f}s: {summary(e.result)}"
        case InstructionsAdded():
            by = f" from message {e.message_id}" if e.message_id else ""
            return f"{at}instructions added{by} {when}: {json.dumps(short(e.text, 200), ensure_ascii=False)}"
        case InputEdited():
            text = json.dumps(short(e.text, 200), ensure_ascii=False)
            if e.applied:
                return f"{at}message {e.message_id} was edited before it started; the new text replaced its input: {text}"
            return f"{at}message {e.message_id} was edited after it started; the new text was not run: {text}"
        case RequestDeleted():
            if e.cancelled:
                return f"{at}message {e.message_id} was deleted before it started"
            return f"{at}message {e.message_id} was deleted after it started; nothing was undone"
        case InstructionsDelivered():
            text = (added or {}).get(e.request_id)
            what = f" {json.dumps(short(text, 60), ensure_ascii=False)}" if text else ""
            return f"{at}attempt {e.attempt} took the instructions{what} into its running session"
        case Spawned():
            if e.error:
                return f"{at}its plan was refused: {e.error}"
            if e.children:
                return f"{at}promised " + ", ".join(f"#{i} {n}" for n, i in e.children.items())
    return None  # dispatched, progress, notified: not part of the story


RESULT_KEYS = ("summary", "reply", "text", "output", "stdout")  # where a result keeps its text


def result_text(result: Any) -> str:
    """A result in full: its text where it has one, else its JSON."""
    if result is None:
        return ""
    if isinstance(result, str):
        return result
    if isinstance(result, dict):
        for key in RESULT_KEYS:
            if isinstance(result.get(key), str) and result[key].strip():
                return result[key]
    return json.dumps(result, ensure_ascii=False, default=str)


def summary(result: Any, width: int = 200) -> str:
    """A result in one line; a respond result by its reply."""
    if isinstance(result, dict) and isinstance(result.get("reply"), str) and set(result) <= {
        "reply", "promises", "commands"
    }:
        return "replied " + json.dumps(short(result["reply"], width), ensure_ascii=False)
    if result is None:
        return "no result"
    if isinstance(result, dict) and isinstance(result.get("text"), str):  # Claude Code: its answer
        return short(result["text"], width)
    text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, default=str)
    return short(text, width)


def short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def elapsed(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"+{seconds:.1f}s"
    if seconds < 3600:
        return f"+{int(seconds // 60)}m{int(seconds % 60):02d}s"
    if seconds < 86400:
        return f"+{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    return f"+{int(seconds // 86400)}d{int(seconds % 86400 // 3600):02d}h"
