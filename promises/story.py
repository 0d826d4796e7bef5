"""The one story-teller: a promise's facts and events told in words.

Pure.  Every view tells a promise in these words: the chat's ``/why``,
``/status`` and ``/list``, the CLI's ``show`` and ``list``, the notifier's
messages and checklists, the web page.  Views choose the layout (a line, a
table cell, Telegram markdown, an emoji in front) but never their own words,
so one fact reads the same wherever it is seen: a retry is "retry scheduled:
attempt 2 in 1.0s" in ``/why`` and in ``valor show`` alike.

``explain`` (``/why``) folds the promise's events with the projection, so an
event the fold ignores (a late duplicate, a result after the promise was
cancelled) is left out of the story too, and the headline is the state every
other reader sees.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from schemas.commands import NewPromise, UnreadableResult, read_respond_result
from schemas.events import (
    Approved,
    AttemptFailed,
    AttemptStopped,
    BudgetAdjusted,
    Cancelled,
    CommandRun,
    Created,
    Dispatched,
    Failed,
    InputEdited,
    InstructionsAdded,
    InstructionsDelivered,
    NoticeFailed,
    NoticeIntended,
    Notified,
    Progress,
    PromiseEvent,
    RequestDeleted,
    RetryScheduled,
    ScheduleCreated,
    ScheduleDeleted,
    SchedulePaused,
    ScheduleResumed,
    Spawned,
    Started,
    Succeeded,
    TicksSkipped,
)

from . import evidence
from .projection import Projection, Promise
from .states import State

# --- a promise's state ------------------------------------------------------------------------
# The words for where a promise is; each view puts its label (and, in Telegram, an emoji) before them.


def succeeded(attempt: int | None = None, took: float | None = None) -> str:
    """``succeeded on attempt 2 in 1.0s``: either part when known."""
    on = f" on attempt {attempt}" if attempt else ""
    return f"succeeded{on}" + (f" in {duration(took)}" if took is not None else "")


def succeeded_but(check: CommandRun, attempt: int | None = None, took: float | None = None) -> str:
    """``succeeded in 1.0s, but its last check `pytest -q` exited 1``: a success that backs no claim the work passes."""
    return f"{succeeded(attempt, took)}, but its last check `{evidence.clip(check.command)}` exited {check.exit_code}"


def failed(reason: str | None, took: float | None = None) -> str:
    """``failed after 1.5s: boom``; the scheduler's reason says how many attempts it took."""
    after = f" after {duration(took)}" if took is not None else ""
    return f"failed{after}: {reason or 'no reason recorded'}"


def cancelled(reason: str | None, attempts: int | None = None) -> str:
    when = "" if attempts is None else f" after {plural(attempts, 'attempt')}" if attempts else " before it started"
    return f"cancelled{when}: {reason or 'no reason recorded'}"


def retrying(attempt: int, error: str | None) -> str:
    return f"attempt {attempt} failed, retrying: {error or 'no error recorded'}"


def running(attempt: int | None = None, of: int | None = None, progress: str | None = None,
            fraction: float | None = None) -> str:
    which = f", attempt {attempt} of {of}" if attempt and of else ""
    share = f" ({fraction:.0%})" if fraction is not None else ""
    return f"running{which}{share}" + (f": {progress}" if progress else "")


def awaiting(reason: str | None) -> str:
    return f"awaiting approval ({reason})" if reason else "awaiting approval"


def waiting_for(deps: Sequence[int]) -> str:
    return f"waiting for {ids(deps)}" if deps else "waiting for its start time"


def state_words(p: Promise, result_width: int = 0) -> str:
    """Where ``p`` is, in words; ``result_width`` > 0 adds a success's one-line result."""
    s, state = p.spec, p.state
    match state:
        case State.SUCCEEDED:
            check = evidence.check_failed(p.evidence)
            words = succeeded(p.attempt) if check is None else succeeded_but(check, p.attempt)
            return f"{words}: {summary(p.result, result_width, respond=p.spec.task == RESPOND)}" if result_width else words
        case State.FAILED:
            return failed(p.error)
        case State.CANCELLED:
            return cancelled(p.error, p.attempt)
        case State.RUNNING:
            return running(p.attempt, s.max_attempts, p.progress)
        case State.RETRYING:
            return retrying(p.attempt, p.error)
        case State.AWAITING:
            return awaiting(s.awaits_approval)
        case State.WAITING:
            return waiting_for(s.depends_on if p.pending_deps else [])
    return str(state)


def label(p: Promise, width: int = 60) -> str:
    """``#12 echo "title"``: how a promise is named in a sentence."""
    return f"#{p.id} {p.spec.task} {json.dumps(short(p.spec.title, width), ensure_ascii=False)}"


def listed(p: Promise, width: int = 60) -> str:
    """``#12 running echo "title"``: a promise as one row of a list or tree."""
    return f"#{p.id} {p.state} {p.spec.task} {json.dumps(short(p.spec.title, width), ensure_ascii=False)}"


def headline(p: Promise) -> str:
    """``#12 echo "title": failed: boom (after 3 attempts)``: a promise and where it is."""
    return f"{label(p)}: {state_words(p)}"


# --- events -----------------------------------------------------------------------------------

# Facts about delivery and notices: in the full timeline (``valor show``), not in the chat's /why.
BOOKKEEPING = (Dispatched, Progress, Notified, NoticeIntended, NoticeFailed)


def phrase(e: Any, moment: str = "", added: Mapping[str, str] | None = None, respond: bool = False) -> str | None:
    """What ``e`` says happened, or None for an event with nothing to tell.

    ``moment``: where instructions added now go (``explain`` knows it from the fold);
    ``added``: request id -> instructions' text, for the delivery of ones added earlier;
    ``respond``: the promise is a respond promise (its result is an answer, ``summary``).
    """
    match e:
        case Created():
            origin = f" by #{e.parent_id}" if e.parent_id else ""
            if e.name:
                origin += f" as step '{e.name}'"
            after = f", after {ids(e.depends_on)}" if e.depends_on else ""
            later = f", not before {elapsed(e.not_before - e.at)}" if e.not_before else ""
            retry = f", retrying #{e.retry_of}" if e.retry_of else ""
            retry += f", continuing #{e.continues} in its session" if e.continues else ""
            tries = f"; up to {e.max_attempts} attempts" if e.max_attempts > 1 else ""
            held = f"; {awaiting(e.awaits_approval)}" if e.awaits_approval else ""
            return f"created{origin}{after}{later}{retry}{tries}{held}"
        case Approved():
            return f"approved by {e.by or 'someone'}" + (f": {e.reason}" if e.reason else "")
        case BudgetAdjusted():
            return f"{e.by or 'someone'} {budget_adjusted(e)}"
        case Dispatched():
            return f"attempt {e.attempt} dispatched"
        case Started():
            again = f" (resumed, delivery {e.delivery})" if e.delivery > 1 else ""
            return f"attempt {e.attempt} started on {e.executor or 'an executor'}{again}"
        case Progress():
            share = f" ({e.fraction:.0%})" if e.fraction is not None else ""
            return f"attempt {e.attempt} progress{share}: {e.text}"
        case AttemptFailed():
            kind = "" if e.retryable else " (not retryable)"
            return f"attempt {e.attempt} failed{kind}: {e.error}"
        case AttemptStopped():
            return f"attempt {e.attempt} stopped: {e.reason}"
        case RetryScheduled():
            return f"retry scheduled: attempt {e.next_attempt} in {duration(e.delay)}"
        case Failed():
            return failed(e.reason)
        case Cancelled():
            by = "the scheduler" if e.by == "scheduler" else (e.by or "someone")
            cause = f" (because #{e.cause_id} ended)" if e.cause_id else ""
            return f"cancelled by {by}{cause}: {e.reason}"
        case Succeeded():
            return f"{succeeded(e.attempt, e.duration)}: {summary(e.result, respond=respond)}"
        case InstructionsAdded():
            by = f" from message {e.message_id}" if e.message_id else ""
            by += f" by {e.by}" if e.by and not e.message_id else ""
            when = f" {moment}" if moment else ""
            return f"instructions added{by}{when}: {json.dumps(short(e.text, 200), ensure_ascii=False)}"
        case InputEdited():
            text = json.dumps(short(e.text, 200), ensure_ascii=False)
            if e.applied:
                return f"message {e.message_id} was edited before it started; the new text replaced its input: {text}"
            return f"message {e.message_id} was edited after it started; the new text was not run: {text}"
        case RequestDeleted():
            if e.cancelled:
                return f"message {e.message_id} was deleted before it started"
            return f"message {e.message_id} was deleted after it started; nothing was undone"
        case InstructionsDelivered():
            text = (added or {}).get(e.request_id)
            what = f" {json.dumps(short(text, 60), ensure_ascii=False)}" if text else ""
            return f"attempt {e.attempt} took the instructions{what} into its running session"
        case Spawned():
            if e.error:
                return f"its plan was refused: {e.error}"
            if e.children:
                # An unnamed task is keyed by its position: its id alone names it.
                return "promised " + ", ".join(f"#{i}" + ("" if n.isdigit() else f" {n}") for n, i in e.children.items())
            return None
        case Notified():
            return f"told chat {e.chat_id} ({e.kind})"
        case NoticeIntended():
            return f"about to tell chat {e.chat_id} ({e.kind})"
        case NoticeFailed():
            return f"could not tell chat {e.chat_id} ({e.kind}): {e.reason}"
        case ScheduleCreated():
            return f"schedule created: {e.title}"
        case SchedulePaused():
            return "schedule paused"
        case ScheduleResumed():
            return "schedule resumed"
        case ScheduleDeleted():
            return "schedule deleted"
        case TicksSkipped():
            return f"{plural(e.count, 'tick')} skipped"
    return None


def explain(events: Sequence[PromiseEvent]) -> str:
    """``/why``: the headline, then what happened, each line at its time since the promise was created."""
    created = next((e for e in events if isinstance(e, Created)), None)
    if created is None:
        return "I have no record of that promise."
    state = Projection()
    story: list[str] = []
    added: dict[str, str] = {}  # request id -> the instructions' text
    for e in events:
        if getattr(e, "id", None) != created.id:
            continue
        moment = _moment(state.promises.get(created.id))
        if isinstance(e, InstructionsAdded):
            added[e.request_id] = e.text
        if state.apply(e):
            line = None if isinstance(e, BOOKKEEPING) else phrase(e, moment, added, created.task == RESPOND)
            if line:
                story.append(f"{elapsed(e.at - created.at)} {line}")
            if isinstance(e, Succeeded | AttemptFailed | AttemptStopped) and e.evidence is not None:
                story += ["    " + fact for fact in evidence.lines(e.evidence)]
    p = state.promises[created.id]
    return "\n".join([headline(p), *story])


def timeline(events: Sequence[PromiseEvent]) -> list[str]:
    """``valor show``: every event, bookkeeping too, at its time since the first, with its evidence in brief."""
    if not events:
        return []
    start, added, respond = events[0].at, {}, answers(events)
    out = []
    for e in events:
        if isinstance(e, InstructionsAdded):
            added[e.request_id] = e.text
        out.append(f"{elapsed(e.at - start, precise=True)} {entry(e, added, respond)}")
    return out


def answers(events: Sequence[Any]) -> bool:
    """Whether these are a respond promise's events (its ``created`` says so): its result is an answer."""
    return any(isinstance(e, Created) and e.task == RESPOND for e in events)


def entry(e: Any, added: Mapping[str, str] | None = None, respond: bool = False) -> str:
    """One event in a full timeline: its phrase (its type's name when it has none) and its evidence in brief."""
    words = phrase(e, added=added, respond=respond) or type(e).__name__
    proof = getattr(e, "evidence", None)
    return f"{words} ({evidence.brief(proof)})" if proof is not None else words


def _moment(p: Promise | None) -> str:
    """Where instructions added now go, told in the story."""
    if p is not None and p.state == State.RUNNING:
        return "while it ran, for the running attempt"
    if p is None or p.started_at is None:
        return "before it started; they join its input"
    return "between attempts; they join the next one's input"


def ids(promises: Sequence[int]) -> str:
    return ", ".join(f"#{d}" for d in promises)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def duration(seconds: float) -> str:
    """``0.2s``, ``1m02s``, ``1h02m``: how long something took."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


# --- results ----------------------------------------------------------------------------------


RESPOND = "respond"  # the task whose result is an answer to a chat message (schemas.commands.RespondResult)
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


def summary(result: Any, width: int = 200, respond: bool = False) -> str:
    """A result in one line; a respond promise's (``respond``), read as its answer (decision 58), by its reply."""
    if respond and isinstance(result, dict):
        try:
            reply = read_respond_result(result).reply
        except UnreadableResult:
            reply = ""
        if reply:
            return "replied " + json.dumps(short(reply, width), ensure_ascii=False)
    if result is None:
        return "no result"
    if isinstance(result, dict) and isinstance(result.get("text"), str):  # Claude Code: its answer
        return short(result["text"], width)
    text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, default=str)
    return short(text, width)


def short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def elapsed(seconds: float, precise: bool = False) -> str:
    """``+1.5s``, ``+2m05s``: time since the promise began; ``precise``: milliseconds under a minute."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"+{seconds:.3f}s" if precise else f"+{seconds:.1f}s"
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
