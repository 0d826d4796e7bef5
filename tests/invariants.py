"""Checks of the log alone: what must hold after any crash, kill or restart."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from schemas.events import (
    Approved,
    Cancelled,
    Created,
    Dispatched,
    Failed,
    InputEdited,
    NoticeFailed,
    Notified,
    RequestDeleted,
    Started,
    Succeeded,
)
from services.scheduler.projection import Projection


def violations(events: list[tuple[int, object]], expect_all_succeeded: bool = True) -> list[str]:
    state = Projection()
    for seq, e in events:
        state.apply(e, seq)
    found: list[str] = []
    created = Counter(e.id for _, e in events if isinstance(e, Created))
    found += [f"#{pid} created {n} times" for pid, n in created.items() if n > 1]
    results = Counter(e.id for _, e in events if isinstance(e, Succeeded))
    found += [f"#{pid} has {n} recorded results" for pid, n in results.items() if n > 1]
    for p in state.promises.values():
        if not p.terminal:
            found.append(f"#{p.id} ended {p.state}, not terminal")
        elif expect_all_succeeded and p.state != "succeeded":
            found.append(f"#{p.id} {p.state}: {p.error}")
    succeeded_at = {e.id: seq for seq, e in events if isinstance(e, Succeeded)}
    approved_at = {e.id: seq for seq, e in events if isinstance(e, Approved)}
    for seq, e in events:
        if isinstance(e, Started):
            for dep in state.promises[e.id].spec.depends_on:
                if succeeded_at.get(dep, float("inf")) > seq:
                    found.append(f"#{e.id} started before its dependency #{dep} succeeded")
            if state.promises[e.id].spec.awaits_approval and approved_at.get(e.id, float("inf")) > seq:
                found.append(f"#{e.id} started before it was approved")
    return found


# --- the chaos suite's checks: every rule by name, so a table can count them ----------

CHECKS = (
    "promise not terminal",
    "terminal result recorded twice",
    "created twice",
    "started before its parents succeeded",
    "attempt dispatched, never owned",
    "message without exactly one respond promise",
    "respond promise without a message",
    "two terminal notices",
    "terminal notice missing",
    "unexpected end",
    "edit taken after dispatch",
    "edit too late before dispatch",
    "edit unanswered",
    "deletion cancelled a started request",
    "deletion before dispatch did not cancel",
)


def check_log(events: list[tuple[int, object]], messages: list[object] = (),
              expected: Callable[[Created], str | None] | None = None) -> dict[str, list[str]]:
    """What the log alone says went wrong, per rule (empty lists when nothing did).

    ``events`` are PROMISES in stream order, ``messages`` the ``message.received``
    stored on CHAT; ``expected(created)`` names the terminal state a promise must
    reach (None: any).  A chat-born promise must have exactly one terminal notice
    (a plan's step: its plan's final reply).
    """
    found: dict[str, list[str]] = {name: [] for name in CHECKS}
    state = Projection()
    for seq, e in events:
        state.apply(e, seq)
    only = [e for _, e in events]
    created = Counter(e.id for e in only if isinstance(e, Created))
    found["created twice"] = [f"#{pid} created {n} times" for pid, n in created.items() if n > 1]
    ends = Counter(e.id for e in only if isinstance(e, Succeeded | Failed | Cancelled))
    found["terminal result recorded twice"] = [f"#{pid} has {n} terminal events" for pid, n in ends.items() if n > 1]
    for p in state.promises.values():
        if not p.terminal:
            found["promise not terminal"].append(f"#{p.id} ended {p.state} (attempt {p.attempt})")
        want = expected(p.spec) if expected else None
        if p.terminal and want is not None and p.state != want:
            found["unexpected end"].append(f"#{p.id} {p.spec.name}: {p.state}, expected {want} ({p.error})")
    found["started before its parents succeeded"] = _early_starts(events, state)
    found["attempt dispatched, never owned"] = _unowned(only, state)
    found.update(_chat(only, messages, state))
    found.update(_edits_and_deletions(events))
    return found


def _edits_and_deletions(events) -> dict[str, list[str]]:
    """Decision 50: an edit or deletion before dispatch changes the request, one after it changes nothing;
    every edit is answered (its ``edited:<date>`` notice, or the chat refused it)."""
    first_dispatch: dict[int, int] = {}
    ended_at: dict[int, int] = {}
    started: set[int] = set()
    cancelled: set[int] = set()
    told: set[tuple[int, str]] = set()
    for seq, e in events:
        if isinstance(e, Dispatched):
            first_dispatch.setdefault(e.id, seq)
        elif isinstance(e, Started):
            started.add(e.id)
        elif isinstance(e, Succeeded | Failed | Cancelled):
            ended_at.setdefault(e.id, seq)
            if isinstance(e, Cancelled):
                cancelled.add(e.id)
        elif isinstance(e, Notified | NoticeFailed):
            told.add((e.id, e.kind))
    out: dict[str, list[str]] = {name: [] for name in CHECKS[-5:]}

    def before(pid: int, seq: int) -> bool:  # dispatched or ended before ``seq``
        return min(first_dispatch.get(pid, seq), ended_at.get(pid, seq)) < seq

    for seq, e in events:
        if isinstance(e, InputEdited):
            if e.applied and before(e.id, seq):
                out["edit taken after dispatch"].append(f"#{e.id}: edit {e.edited_at} taken at {seq}")
            if not e.applied and not before(e.id, seq):
                out["edit too late before dispatch"].append(f"#{e.id}: edit {e.edited_at} refused at {seq}")
            if (e.id, f"edited:{int(e.edited_at)}") not in told:
                out["edit unanswered"].append(f"#{e.id}: edit {e.edited_at} has no notice")
        elif isinstance(e, RequestDeleted):
            if e.cancelled and (before(e.id, seq) or e.id in started or e.id not in cancelled):
                out["deletion cancelled a started request"].append(
                    f"#{e.id}: deleted at {seq}, dispatched at {first_dispatch.get(e.id)}, started {e.id in started}")
            if not e.cancelled and not before(e.id, seq):
                out["deletion before dispatch did not cancel"].append(f"#{e.id}: deleted at {seq}, not cancelled")
    return out


def _early_starts(events, state: Projection) -> list[str]:
    succeeded_at = {}
    for seq, e in events:
        if isinstance(e, Succeeded):
            succeeded_at.setdefault(e.id, seq)
    out = []
    for seq, e in events:
        if isinstance(e, Started) and e.id in state.promises:
            out += [f"#{e.id} attempt {e.attempt} started before #{dep} succeeded"
                    for dep in state.promises[e.id].spec.depends_on if succeeded_at.get(dep, float("inf")) > seq]
    return out


def _unowned(events, state: Projection) -> list[str]:
    """A dispatched attempt must be started by an executor, unless its promise was cancelled first."""
    started = {(e.id, e.attempt) for e in events if isinstance(e, Started)}
    out = []
    for e in events:
        if isinstance(e, Dispatched) and (e.id, e.attempt) not in started:
            p = state.promises.get(e.id)
            if p is None or p.status != "cancelled":
                out.append(f"#{e.id} attempt {e.attempt} dispatched, never started ({p.state if p else 'unknown'})")
    return out


def _chat(events, messages, state: Projection) -> dict[str, list[str]]:
    responds: dict[tuple[int, int], list[int]] = {}
    for e in events:
        if isinstance(e, Created) and e.task == "respond" and e.chat_id is not None:
            responds.setdefault((e.chat_id, e.message_id), []).append(e.id)
    keys = {(m.chat_id, m.message_id) for m in messages}
    terminal_notices = Counter(e.id for e in events if isinstance(e, Notified) and e.kind == "terminal")
    finals = Counter(e.id for e in events if isinstance(e, Notified) and e.kind == "final")
    # A plan told as a checklist: its final reply is its steps' terminal notice (decision 43).
    in_final = {i for pid in finals for i in (state.promises[pid].children or {}).values() if pid in state.promises}
    chat_born = [p for p in state.promises.values() if p.spec.chat_id is not None and p.spec.message_id is not None]
    return {
        "message without exactly one respond promise": [
            f"message {c}/{m} has {len(responds.get((c, m), []))} respond promises" for c, m in sorted(keys)
            if len(responds.get((c, m), [])) != 1],
        "respond promise without a message": [
            f"#{ids[0]} answers {c}/{m}, which is not on CHAT" for (c, m), ids in responds.items() if (c, m) not in keys],
        "two terminal notices": [f"#{pid} has {n} terminal notices" for pid, n in terminal_notices.items() if n > 1]
        + [f"#{pid} has {n} final replies for its plan" for pid, n in finals.items() if n > 1],
        "terminal notice missing": [f"#{p.id} ({p.state}) has no terminal notice" for p in chat_born
                                    if p.terminal and not terminal_notices.get(p.id) and p.id not in in_final],
    }
