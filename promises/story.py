"""``/why 12``: what happened to a promise, told from its events.

Pure: a function of the promise's events in log order.  The events are folded
with the scheduler's own projection, so an event the fold ignores (a late
duplicate, a result after the promise was cancelled) is left out of the story
too, and the headline is the state every other reader sees.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from schemas.commands import NewPromise
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

from . import evidence
from .projection import Projection, Promise


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
            return f"{at}{e.by or 'someone'} {budget_adjusted(e)}"
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


# --- words shared by every view ---------------------------------------------------------


def usd(amount: float) -> str:
    """$0.0031, $0.42, $12.50: cents once there are cents, four places below."""
    return f"${amount:.2f}" if amount >= 0.01 or amount == 0 else f"${amount:.4f}"


def when(period: str) -> str:
    return "today" if period == "day" else "this month"


def waited(seconds: float) -> str:
    """``1h``, ``30m``, ``45s``, ``1d2h``: how long an unanswered plan waits."""
    seconds = max(0, round(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            n, seconds = divmod(seconds, size)
            parts.append(f"{n}{unit}")
    return "".join(parts[:2])


def budget_adjusted(e: BudgetAdjusted) -> str:
    whose = "this chat's" if e.scope == "chat" else f"user {e.target}'s"
    period = "daily" if e.period == "day" else "monthly"
    if e.reset:
        return f"reset {whose} {period} budget ({when(e.period)}'s spend counts afresh)"
    return f"added {usd(e.add)} to {whose} {period} budget for {when(e.period)}"


def reply_with_ids(reply: str, children: Mapping[str, int], promises: Sequence[NewPromise] = ()) -> str:
    """The reply plus one line naming each spawned promise by its id.

    ``children`` is the ``spawned`` event's name -> id (an unnamed task is keyed
    by its position, "0", "1", ...); ``promises`` is the respond result's list,
    used for titles and dependencies when given.
    ``Promised: #12 setup, #13 write (after #12), #14 run (after #13)``.
    """
    if not children:
        return reply
    parts = []
    tasks = {(t.name or str(i)): t for i, t in enumerate(promises)}
    for key, pid in sorted(children.items(), key=lambda kv: kv[1]):
        task = tasks.get(key)
        name = key if task is None or task.name else task.title or task.type
        after = [f"#{children[a]}" for a in (task.after if task else []) if a in children]
        after += [f"#{d}" for d in (task.depends_on if task else [])]
        parts.append(f"#{pid} {name}" + (f" (after {', '.join(after)})" if after else ""))
    line = "Promised: " + ", ".join(parts)
    return f"{reply}\n{line}" if reply else line


# --- a plan that waits for approval (decision 45) ---------------------------------------------


def how_to_answer(steps: list[Created]) -> str:
    """The line that says a plan waits, why, how to answer and until when."""
    expiry = steps[0].approve_by
    ends = f" Unanswered, it is cancelled in {waited(expiry - steps[0].at)}." if expiry is not None else ""
    return (f"✋ This plan waits for your approval ({steps[0].awaits_approval}). Answer go or 👍 to run it, "
            f"no to cancel it, or say what to change.{ends}")


def approval_prompt(steps: list[Created]) -> str:
    """A waiting plan told without a checklist (one step, or a long reply): its steps and how to answer."""
    lines = []
    for s in steps:
        after = ", ".join(f"#{d}" for d in s.depends_on)
        lines.append(f"#{s.id} {s.name or short(s.title, 40)} ({s.task}{f', after {after}' if after else ''})")
    return "\n".join([*lines, how_to_answer(steps)])
