"""Every text the notifier sends, built only from recorded events.  Pure.

A terminal text comes from the promise's ``succeeded`` / ``failed`` /
``cancelled`` event alone (summary, duration, error, and the attempt's
recorded evidence in one line): it never claims more than the log says, and a
success whose last check failed says so instead of ✅.  Long texts are split at Telegram's 4,096 characters;
one longer than ``[telegram] document_after_chars`` is one message instead: its beginning as the caption of a
document holding the whole text (decision 56).

A plan (decision 43) is told by its checklist (a line per step: state, time,
one-line result) inside the plan's reply, or in a message of its own when the
reply leaves it no room, and by one final reply with every step's short
result.  A checklist always fits one message: it is edited in place.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from promises import evidence, story
from promises.states import State
from promises.story import duration, reply_with_ids
from promises.story import result_text as summary
from schemas.commands import RespondResult
from schemas.events import Cancelled, Failed, InputEdited, Succeeded
from valor import budget

from .board import Board, Item

LIMIT = 4096
CHECKLIST_LINE = 160  # a step's line in the checklist at most; fewer when many steps share the message
FINAL_LINE = 300  # a step's line in the final reply at most
MIN_LINE = 48
NAME_CHARS = 24  # of a step's name in its line, so its id always shows
INLINE_REPLY = LIMIT // 2  # a plan's reply up to this long carries the checklist itself
SHOW_HINT = 'Reply "show N" (or a step\'s name) to this message for that step\'s full result.'


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


CAPTION = 1024  # Telegram's limit on a document's caption (UTF-16 units, for accounts without Premium)
DOCUMENT_NAMES = {"terminal": "result", "final": "results"}  # a kind's file name; others are named by their kind


@dataclass(frozen=True)
class Document:
    """A long text sent as one message: ``caption`` is its beginning, ``data`` the whole of it."""

    name: str
    caption: str
    data: bytes


def document(text: str, promise_id: int, kind: str, after_chars: int) -> Document | None:
    """The document to send instead of ``text``'s parts, when it is longer than ``after_chars``; else None."""
    if len(text) <= after_chars:
        return None
    name = f"{DOCUMENT_NAMES.get(kind, kind.split(':')[0])}-{promise_id}.txt"
    tail = f"\n\n… {len(text):,} characters in all: the whole text is in {name}."
    head = text[: CAPTION - len(tail)]
    while _utf16(head + tail) > CAPTION:  # an emoji counts twice on Telegram's side
        head = head[: len(head) - max(1, (_utf16(head + tail) - CAPTION) // 2)]
    cut = head.rfind("\n", len(head) // 2)
    head = head[:cut] if cut > 0 else head
    return Document(name, head.rstrip() + tail, text.encode())


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def parts(text: str, doc: Document | None) -> list[str]:
    """What is sent as text, and recognised by its digests: the caption of a document, else the split text."""
    return [doc.caption] if doc is not None else split(text)


def digest(text: str) -> str:
    """How a sent part is recognised later (Telegram trims surrounding whitespace)."""
    return hashlib.sha256(text.strip().encode()).hexdigest()[:16]


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
                text = f"⚠️ {label(item)} — {story.succeeded_but(failed, took=end.duration)}"
            else:
                text = f"✅ {label(item)} — {story.succeeded(took=end.duration)}"
            return "\n\n".join(part for part in (text, summary(end.result), proof) if part)
        case Failed():
            text = f"❌ {label(item)} — {story.failed(end.reason, took=_took(item, end))}"
            return f"{text}\n\n{proof}" if proof else text
        case Cancelled():
            return f"🚫 {label(item)} — {story.cancelled(end.reason)}"
    raise ValueError(f"#{item.id} has not ended")


def respond_terminal(item: Item, board: Board) -> str:
    end = item.end
    match end:
        case Failed():
            return f"❌ I could not answer this (#{item.id}): {end.reason}"
        case Cancelled():
            return f"🚫 Answering this was cancelled (#{item.id}): {end.reason}"
    result = _respond_result(item)
    children = [c.spec for c in board.children(item) if c is not None]
    held = [c.spec for c in board.children(item) if c is not None and c.awaiting]
    if held:  # the plan itself, with how to answer, instead of the list of ids
        lines = [result.reply.strip(), story.approval_prompt(held)]
    else:
        lines = [reply_with_ids(result.reply.strip(), item.spawned.children if item.spawned else {}, result.promises)]
    if item.spawned is not None and item.spawned.schedules:  # its id, for /pause and /unschedule
        lines[-1] += "\nSchedule: " + ", ".join(f"#{sid}" for sid in item.spawned.schedules)
    lines.append(budget.plan_estimate(children))
    if item.spawned is not None and item.spawned.error:
        lines.append(f"⚠️ The promised work could not start: {item.spawned.error}")
    return "\n\n".join(line for line in lines if line) or "✅ Done."


def _respond_result(item: Item) -> RespondResult:
    """The answer the board read, or one that tells an unreadable result as it is."""
    return item.answer or RespondResult(reply=summary(item.end.result if item.end is not None else None))


def edited(item: Item, edit: InputEdited) -> str:
    """The answer to an edit of a request: taken, or too late and what to do instead."""
    if edit.applied:
        return "✏️ Got your edit before I started: I'm answering the new text."
    return (f"✏️ Your edit came after I had started on this message (#{item.id}), so the earlier text is what I "
            f"answered. To run the new text, send it as a new message; to change work under way, reply to my "
            f"message about it.")


def status(item: Item) -> str:
    """The one status message of a background promise, edited in place."""
    end = item.end
    match end:
        case Succeeded() if (failed := evidence.check_failed(item.evidence)) is not None:
            return f"⚠️ {label(item)}: {story.succeeded_but(failed, took=end.duration)}"
        case Succeeded():
            return f"✅ {label(item)}: {story.succeeded(took=end.duration)}"
        case Failed():
            return f"❌ {label(item)}: {State.FAILED}"
        case Cancelled():
            return f"🚫 {label(item)}: {State.CANCELLED}"
    if item.retrying:
        return f"🔁 {label(item)}: {story.retrying(item.attempt, item.retrying[:200])}"
    return f"⏳ {label(item)}: {story.running(progress=item.progress, fraction=item.fraction)}"


# --- plans ------------------------------------------------------------------------


def checklist_inline(item: Item) -> bool:
    """The plan's reply carries its checklist unless the reply is long (then the checklist is a message of its own).

    Decided by the reply alone, which never changes, so every edit keeps to the
    same message and fits in it.
    """
    return len(_respond_result(item).reply.strip()) <= INLINE_REPLY


def plan_reply(item: Item, steps: list[Item], board: Board) -> str:
    """The plan's reply: the agent's words and the checklist (which names the ids), or the reply as usual."""
    if not checklist_inline(item):
        return respond_terminal(item, board)
    reply = _respond_result(item).reply.strip()
    head = f"{reply}\n\n" if reply else ""
    held = [s.spec for s in steps if s.awaiting]
    foot = f"\n{story.how_to_answer(held)}" if held else ""  # gone once approved: the reply is edited
    if estimate := budget.plan_estimate([s.spec for s in steps]):
        foot = f"\n{estimate}{foot}"
    return head + checklist(steps, board, LIMIT - len(head) - len(foot)) + foot


def plan_status(item: Item, steps: list[Item], board: Board) -> str:
    """The checklist as a message of its own, when the plan's reply left it no room."""
    head = f"Plan of #{item.id}, {len(steps)} steps:\n"
    return head + checklist(steps, board, LIMIT - len(head))


def checklist(steps: list[Item], board: Board, room: int) -> str:
    """One line per step and the hint, in at most ``room`` characters: lines shrink, then the last steps are counted."""
    room -= len(SHOW_HINT) + 1 + room // MIN_LINE  # a line's emoji may count twice (UTF-16) on Telegram's side
    n = len(steps)
    width = max(MIN_LINE, min(CHECKLIST_LINE, room // n - 1))
    shown = n if n * (width + 1) <= room else max(0, (room - MIN_LINE) // (width + 1))
    lines = [step_line(i, step, board, width) for i, step in enumerate(steps[:shown], 1)]
    if shown < n:
        lines.append(_clip(f"… and {n - shown} more: " + tally(steps[shown:]), MIN_LINE))
    return "\n".join([*lines, SHOW_HINT])


def plan_final(item: Item, steps: list[Item], board: Board) -> str:
    """The one reply when every step has ended: how the plan went, then each step's short result."""
    n = len(steps)
    ok = [s for s in steps if isinstance(s.end, Succeeded)]
    checks = [s for s in ok if evidence.check_failed(s.evidence)]
    ends = [s.end.at for s in steps if s.end is not None and s.end.at]
    took = max(ends) - item.spawned.at if ends and item.spawned.at else None
    if len(ok) == n and not checks:
        head = f"✅ All {n} steps {story.succeeded(took=took)}."
    elif len(ok) == n:
        head = f"⚠️ All {n} steps {story.succeeded(took=took)}, but the last check of {_names(checks)} failed."
    else:
        head = f"❌ The plan ended{f' in {duration(took)}' if took is not None else ''}: {tally(steps)}."
    lines = [step_line(i, step, board, FINAL_LINE) for i, step in enumerate(steps, 1)]
    return "\n".join([head, "", *lines, "", SHOW_HINT])


def step_line(n: int, item: Item, board: Board, width: int) -> str:
    """``✅ 2. write #13 — 4.2s · 2 files changed (+30 −0) · ran `pytest -q`: exit 0``."""
    icon, what = step_state(item, board)
    return _clip(f"{icon} {n}. {_clip(step_name(item), NAME_CHARS)} #{item.id} — {what}", width)


def step_name(item: Item) -> str:
    return item.spec.name or item.spec.title or item.spec.task


def step_state(item: Item, board: Board) -> tuple[str, str]:
    end = item.end
    match end:
        case Succeeded():
            icon = "⚠️" if evidence.check_failed(item.evidence) else "✅"
            result = step_result(item)
            return icon, duration(end.duration) + (f" · {result}" if result else "")
        case Failed():
            return "❌", story.failed(end.reason, took=_took(item, end))
        case Cancelled():
            return "🚫", story.cancelled(end.reason)
    if item.awaiting:
        after = f", after {story.ids(item.spec.depends_on)}" if item.spec.depends_on else ""
        return "✋", f"{item.spec.task}, {story.awaiting(None)}{after}"
    if item.retrying:
        return "🔁", story.retrying(item.attempt, item.retrying)
    if item.started_at is not None:
        return "⏳", story.running(progress=item.progress, fraction=item.fraction)
    waits = [d for d in item.spec.depends_on
             if (dep := board.items.get(d)) is None or not isinstance(dep.end, Succeeded)]
    if waits:
        return "⏸", story.waiting_for(waits)
    return "🕓", State.QUEUED


def _took(item: Item, end: Failed) -> float | None:
    return end.at - item.started_at if item.started_at and end.at else None


def step_result(item: Item) -> str:
    """A step's one-line result: for Claude Code steps what its evidence shows, else its result's first line."""
    return evidence.brief(item.evidence) or next(iter(summary(item.end.result).strip().splitlines()), "")


STATES = ((State.SUCCEEDED, Succeeded), (State.FAILED, Failed), (State.CANCELLED, Cancelled))


def tally(steps: list[Item]) -> str:
    """``2 succeeded, 1 failed, 1 open``."""
    counts = [(word, sum(1 for s in steps if isinstance(s.end, kind))) for word, kind in STATES]
    counts.append(("open", sum(1 for s in steps if s.end is None)))
    return ", ".join(f"{k} {word}" for word, k in counts if k)


def _names(steps: list[Item]) -> str:
    return ", ".join(f"#{s.id} {step_name(s)}" for s in steps)


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


DIGEST_LINES = 50  # a chat away for long gets the latest this many, and a count of the rest


def away_digest(told: list[tuple[Item, list[Item]]], board: Board) -> str:
    """``While I was away, these ended:`` and a line per promise (a plan: its tally), newest last (decision 52)."""
    lines = []
    for item, steps in told[-DIGEST_LINES:]:
        if steps:
            ok = all(isinstance(s.end, Succeeded) for s in steps) and isinstance(item.end, Succeeded)
            icon, detail = ("✅" if ok else "❌"), tally(steps)
        else:
            icon, detail = step_state(item, board)
        lines.append(f"{icon} {_clip(f'{label(item)} — {detail}', 120)}")
    more = len(told) - len(lines)
    head = "While I was away, these ended" + (f" ({more} earlier ones not listed)" if more > 0 else "") + ":"
    return "\n".join([head, *lines, "Ask /why <id> for one of them."])
