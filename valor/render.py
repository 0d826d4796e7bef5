"""What the CLI prints: promises as JSON objects and as text for people.

Pure functions of the projection, the events and ``now``; nothing here talks
to NATS or reads the clock, so each form is pinned by a test.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from schemas.events import (
    Approved,
    AttemptFailed,
    AttemptStopped,
    BudgetAdjusted,
    Cancelled,
    Created,
    Dispatched,
    Failed,
    InstructionsAdded,
    InstructionsDelivered,
    NoticeFailed,
    Notified,
    Progress,
    PromiseEvent,
    RetryScheduled,
    Spawned,
    Started,
    Succeeded,
)
from services.scheduler.approval import waited
from services.scheduler.projection import TERMINAL, Projection, Promise, Schedule
from valor import budget, evidence, recurrence

# --- JSON -----------------------------------------------------------------------


def promise_json(p: Promise, dependents: Sequence[int] = (), events: Iterable[PromiseEvent] | None = None) -> dict:
    """The ``show --json`` object; ``list --json`` leaves out ``events``."""
    s = p.spec
    out: dict[str, Any] = {
        "id": p.id,
        "type": s.task,
        "state": p.state,
        "attempts": p.attempt,
        "result": p.result,
        "depends_on": list(s.depends_on),
        "title": s.title,
        "input": s.input,
        "error": p.error,
        "priority": s.priority,
        "queue": s.queue,
        "key": s.concurrency_key,
        "created_at": s.at,
        "finished_at": p.finished_at,
        "dependents": list(dependents),
        "children": p.children,
        "retry_of": s.retry_of,
        "continues": s.continues,
        "parent_id": s.parent_id,
        "awaits_approval": s.awaits_approval,  # why it waited (or waits) for approval; null: it need not
        "approve_by": s.approve_by,
        "evidence": msgspec.to_builtins(p.evidence) if p.evidence is not None else None,
    }
    if events is not None:
        out["events"] = [msgspec.to_builtins(e) for e in events]
    return out


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False, default=str)


def compact(value: Any, width: int = 200) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


# --- one promise ------------------------------------------------------------------


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def headline(p: Promise) -> str:
    """``#12 echo "title" succeeded after 1 attempt``."""
    s = p.spec
    state = p.state
    if p.status in TERMINAL:
        tail = f"after {plural(p.attempt, 'attempt')}" if p.attempt else "before any attempt"
    elif state == "waiting" and p.pending_deps:
        tail = f"for {p.pending_deps} " + ("dependency" if p.pending_deps == 1 else "dependencies")
    elif p.attempt:
        tail = f"on attempt {p.attempt} of {s.max_attempts}"
    else:
        tail = ""
    return f"#{p.id} {s.task} {json.dumps(s.title, ensure_ascii=False)} {state} {tail}".rstrip()


def fields(p: Promise) -> list[tuple[str, str]]:
    s = p.spec
    rows = [("input", compact(s.input))]
    if p.status == "succeeded":
        rows.append(("result", compact(p.result, 2000)))
    if p.error:
        rows.append(("error", p.error))
    rows.append(("priority", f"{s.priority}   queue {s.queue}"
                 + (f"   key {s.concurrency_key} (limit {s.concurrency_limit})" if s.concurrency_key else "")))
    retry = f"{plural(s.max_attempts, 'attempt')}, backoff {s.backoff:g}s x{s.backoff_factor:g}"
    rows.append(("policy", retry + (f", timeout {s.timeout:g}s" if s.timeout else "")))
    if p.executor:
        rows.append(("executor", p.executor))
    if s.not_before and not p.terminal:
        rows.append(("not before", f"+{s.not_before - s.at:.3f}s"))
    if s.retry_of:
        rows.append(("retry of", f"#{s.retry_of}"))
    if s.continues:
        rows.append(("continues", f"#{s.continues} (Claude Code session {s.resume_session})"))
    if s.awaits_approval:
        until = f"; cancelled if not approved within {waited(s.approve_by - s.at)}" if s.approve_by is not None else ""
        rows.append(("approval", f"needed ({s.awaits_approval}){until}"))
    if s.parent_id:
        rows.append(("spawned by", f"#{s.parent_id}"))
    if p.children:
        rows.append(("children", " ".join(f"{n}=#{i}" for n, i in p.children.items())))
    if p.progress and not p.terminal:
        rows.append(("progress", p.progress))
    return rows


def describe(e: PromiseEvent) -> str:
    match e:
        case Created():
            return f"created ({e.task}, priority {e.priority}, queue {e.queue})"
        case Approved():
            return f"approved by {e.by or '?'}" + (f": {e.reason}" if e.reason else "")
        case BudgetAdjusted():
            return f"budget adjusted by {e.by or '?'}: {budget.describe(e)}"
        case Dispatched():
            return f"dispatched attempt {e.attempt}"
        case Started():
            again = f" (delivery {e.delivery})" if e.delivery > 1 else ""
            return f"started attempt {e.attempt} on {e.executor or '?'}{again}"
        case Progress():
            share = f" ({e.fraction:.0%})" if e.fraction is not None else ""
            return f"progress attempt {e.attempt}: {e.text}{share}"
        case Succeeded():
            proof = f" ({evidence.brief(e.evidence)})" if e.evidence is not None else ""
            return f"succeeded attempt {e.attempt} in {e.duration:.3f}s{proof}"
        case AttemptFailed():
            kind = "" if e.retryable else " (not retryable)"
            proof = f" ({evidence.brief(e.evidence)})" if e.evidence is not None else ""
            return f"attempt {e.attempt} failed{kind}: {e.error}{proof}"
        case AttemptStopped():
            proof = f" ({evidence.brief(e.evidence)})" if e.evidence is not None else ""
            return f"attempt {e.attempt} stopped: {e.reason}{proof}"
        case RetryScheduled():
            return f"retry scheduled: attempt {e.next_attempt} in {e.delay:.3f}s"
        case Failed():
            return f"failed: {e.reason}"
        case Cancelled():
            return f"cancelled by {e.by or '?'}: {e.reason}"
        case Spawned():
            if e.error:
                return f"spawning failed: {e.error}"
            return "spawned " + (" ".join(f"{n}=#{i}" for n, i in e.children.items()) or "nothing")
        case Notified():
            return f"notified {e.kind} in chat {e.chat_id}"
        case NoticeFailed():
            return f"notice {e.kind} not sent: chat {e.chat_id} cannot be reached ({e.reason})"
        case InstructionsAdded():
            return f"instructions added by {e.by or '?'}: {compact(e.text)}"
        case InstructionsDelivered():
            return f"instructions {e.request_id} delivered to attempt {e.attempt}"
    return type(e).__name__


def timeline(events: Sequence[PromiseEvent]) -> list[str]:
    if not events:
        return []
    start = events[0].at
    return [f"+{e.at - start:.3f}s {describe(e)}" for e in events]


def label(p: Promise | None, pid: int) -> str:
    if p is None:
        return f"#{pid} (unknown)"
    return f"#{pid} {p.state} {p.spec.task} {json.dumps(p.spec.title, ensure_ascii=False)}"


def tree(p: Promise, state: Projection) -> list[str]:
    """Parents above, the promise, then its dependents (two levels) below."""
    lines = [label(state.promises.get(d), d) for d in p.spec.depends_on]
    indent = "└─ " if lines else ""
    lines.append(indent + label(p, p.id) + "  ◀")
    pad = "   " if lines[:-1] else ""
    for child in state.dependents.get(p.id, ()):
        lines.append(f"{pad}└─ {label(state.promises.get(child), child)}")
        for grandchild in state.dependents.get(child, ()):
            lines.append(f"{pad}   └─ {label(state.promises.get(grandchild), grandchild)}")
    return lines


def show_text(p: Promise, events: Sequence[PromiseEvent], state: Projection) -> str:
    out = [headline(p)]
    width = max(len(k) for k, _ in fields(p))
    out += [f"  {k.ljust(width)}  {v}" for k, v in fields(p)]
    if p.evidence is not None:
        out.append("evidence")
        out += ["  " + line for line in evidence.lines(p.evidence)]
    out.append("timeline")
    out += ["  " + line for line in timeline(events)]
    if p.spec.depends_on or state.dependents.get(p.id):
        out.append("dependencies")
        out += ["  " + line for line in tree(p, state)]
    return "\n".join(out)


# --- many promises -------------------------------------------------------------------


def age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, *rows]]
    return "\n".join(lines)


def list_text(promises: Sequence[Promise], now: float) -> str:
    rows = []
    for p in promises:
        title = p.spec.title if len(p.spec.title) <= 50 else p.spec.title[:49] + "…"
        rows.append((f"#{p.id}", p.state, p.spec.task, str(p.attempt), title, age(now - p.spec.at)))
    return table(rows, ("ID", "STATE", "TYPE", "ATT", "TITLE", "AGE"))


def counts_text(counts: Mapping[str, int]) -> str:
    order = ("awaiting_approval", "waiting", "queued", "running", "retrying", "succeeded", "failed", "cancelled")
    parts = [f"{s} {counts[s]}" for s in order if counts.get(s)]
    return ", ".join(parts) if parts else "none"


# --- the cluster ----------------------------------------------------------------------


def size(n: int) -> str:
    for unit, step in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= step:
            return f"{n / step:.1f} {unit}"
    return f"{n} B"


def peers_text(cluster: Mapping[str, Any] | None) -> str:
    if not cluster:
        return ""
    parts = [f"leader {cluster.get('leader') or 'NONE'}"]
    for r in cluster.get("replicas") or []:
        health = "current" if r.get("current") else f"lagging {r.get('lag') or 0}"
        if r.get("offline"):
            health = "offline"
        parts.append(f"{r['name']} {health}")
    return ", ".join(parts)


def pools_text(executor: Mapping[str, Any]) -> str:
    """``respond 0/2 · default 4/4``: each pool's busy and slots; a shared pool names all its queues."""
    pools = executor.get("pools") or [executor]  # a status from before pools: one shared by all queues
    return " · ".join(f"{','.join(p['queues'])} {p['busy']}/{p['slots']}" for p in pools)


def status_text(status: Mapping[str, Any]) -> str:
    server = status["server"]
    out = [f"nats       {server['url']}  server {server['name']} v{server['version']}"
           + (f"  cluster {server['cluster']}" if server.get("cluster") else "")]
    meta = status.get("cluster") or {}
    if meta.get("peers"):
        out.append(f"peers      {', '.join(meta['peers'])}")
    out.append(f"scheduler  {status['scheduler'] or 'NONE active'}")
    executors = status["executors"]
    out.append(f"executors  {len(executors) or 'NONE'}")
    rows = [(name, pools_text(e), f"seen {e['age']:.1f}s ago") for name, e in sorted(executors.items())]
    if rows:
        out += ["  " + line for line in table(rows, ("ID", "BUSY/SLOTS PER QUEUE", "HEARTBEAT")).splitlines()]
    out.append("streams")
    names = list(status["streams"])
    rows = []
    for name in names:
        st = status["streams"][name]
        if st is None:
            rows.append((name, "MISSING", "", ""))
        elif "error" in st:
            rows.append((name, "NO ANSWER", "", ""))
        else:
            rows.append((name, f"{st['messages']} msgs", size(st["bytes"]), peers_text(st.get("cluster"))))
    lines = table(rows, ("STREAM", "MESSAGES", "BYTES", "REPLICAS")).splitlines()
    out.append("  " + lines[0])
    for name, line in zip(names, lines[1:], strict=True):
        out.append("  " + line)
        consumers = (status["streams"][name] or {}).get("consumers") or {}
        for cname, c in sorted(consumers.items()):
            out.append(f"    consumer {cname}: pending {c['num_pending']}, ack pending {c['num_ack_pending']}")
    out.append(f"promises   {counts_text(status['promises'])}")
    if unreachable := status.get("unreachable"):  # decision 52: their notices are recorded, not sent
        out.append("unreachable " + ", ".join(f"chat {chat} ({reason})" for chat, reason in unreachable.items()))
    out += [f"problem    {e}" for e in status.get("errors", [])]
    return "\n".join(out)


def schedule_json(s: Schedule) -> dict:
    spec = s.spec
    rule = {"cron": spec.cron, "every": spec.every, "tz": spec.tz}
    return {"id": s.id, "recurrence": recurrence.describe(**rule), "title": spec.title, "type": spec.task,
            "state": "deleted" if s.deleted else "paused" if s.paused else "active", "runs": s.runs,
            "last_run": s.last_run, "skipped_untold": s.skipped, "missed": spec.missed, "overlap": spec.overlap,
            "chat_id": spec.chat_id,
            "next_tick": None if not s.active else recurrence.next_fire(s.settled, anchor=spec.anchor, **rule)}


def schedule_line(row: dict, last_state: str | None = None) -> str:
    """``last_state``: the last run's state, when the caller knows it (the chat's ``/schedules``)."""
    when = f", next {_clock(row['next_tick'])}" if row["next_tick"] is not None else ""
    last = f", last run #{row['last_run']}" if row["last_run"] is not None else ""
    last += f" {last_state}" if last and last_state else ""
    return (f"⏰ #{row['id']} {row['recurrence']}: {row['title']} [{row['type']}] — {row['state']}, "
            f"{row['runs']} run{'s' if row['runs'] != 1 else ''}{last}{when}")


def _clock(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
