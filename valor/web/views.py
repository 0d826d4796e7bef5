"""What the dashboard shows, as JSON: pure functions of the projection and events.

Rows and details reuse ``valor.render`` (the ``show --json`` object, the timeline
texts), so the page, the CLI and the tests agree.  The dependency graph is laid
out here, not in the browser: layers by depth (parents left, dependents right),
rows ordered by their parents' rows, so a test can pin the picture.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from promises import evidence, story
from promises.projection import Projection, Promise
from valor import render, spend

NODE_W, NODE_H = 170, 44  # one promise's box in the SVG
COL_W, ROW_H = 230, 64  # distance between layers and between rows
MARGIN = 12
GRAPH_LIMIT = 200  # nodes drawn around one promise


def row(p: Promise, state: Projection) -> dict[str, Any]:
    """One line of the promises table: the ``list --json`` object plus what the page filters on."""
    out = render.promise_json(p, state.dependents.get(p.id, []))
    out.update(chat_id=p.spec.chat_id, executor=p.executor or None, progress=None if p.terminal else p.progress,
               cost_usd=round(p.cost_usd, 6) if p.spent else None, estimate_usd=p.spec.estimate_usd)
    return out


def matches(item: Mapping[str, Any], filters: Mapping[str, str]) -> bool:
    """``filters`` as in the query string: state, type, chat (all exact, empty = any)."""
    for key, field in (("state", "state"), ("type", "type"), ("chat", "chat_id")):
        wanted = filters.get(key) or ""
        if wanted and str(item.get(field)) != wanted:
            return False
    return True


def summary(state: Projection) -> dict[str, Any]:
    """What the list shows beside its rows, from a whole projection (a served answer gives it instead)."""
    return {"total": len(state.promises), "counts": dict(state.counts()),
            "types": sorted({p.spec.task for p in state.promises.values()}),
            "chats": sorted({p.spec.chat_id for p in state.promises.values() if p.spec.chat_id is not None})}


def promise_list(state: Projection, filters: Mapping[str, str], limit: int, seq: int,
                 about: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Newest first, at most ``limit``; ``seq`` lets the page ask for changes after it.

    ``about``: the ``summary`` of every promise when ``state`` holds only those answered.
    """
    rows = []
    for pid in sorted(state.promises, reverse=True):
        item = row(state.promises[pid], state)
        if matches(item, filters):
            rows.append(item)
            if len(rows) >= limit:
                break
    return {"seq": seq, **(summary(state) if about is None else about), "promises": rows}


SPEND_DAYS = 14  # days of spend the page shows
SPEND_TOP = 10


def spend_view(state: Projection, filters: Mapping[str, str], now: float, days: int = SPEND_DAYS) -> dict[str, Any]:
    """Spend per day (the last ``days``, empty days included) and the costliest promises, of one chat if asked."""
    chat = filters.get("chat") or ""
    totals = spend.totals(spend.charges(state.promises.values()), since=spend.day_start(now) - (days - 1) * 86400,
                          chat_id=int(chat) if chat.lstrip("-").isdigit() else None)
    by_day = [{"day": day, **(totals.by_day[day].as_dict() if day in totals.by_day else spend.Total().as_dict())}
              for day in (spend.day_of(now - i * 86400) for i in range(days - 1, -1, -1))]
    top = [{"id": pid, "title": state.promises[pid].spec.title, "type": state.promises[pid].spec.task,
            "chat_id": state.promises[pid].spec.chat_id, **t.as_dict()} for pid, t in totals.top(SPEND_TOP) if t.usd > 0]
    return {"total": totals.all.as_dict(), "by_day": by_day, "top": top}


def timeline(events: Sequence[Any]) -> list[dict[str, Any]]:
    start, respond = (events[0].at if events else 0.0), story.answers(events)
    return [{"type": type(e).__struct_config__.tag, "at": e.at, "offset": round(e.at - start, 3),
             "text": story.entry(e, respond=respond)} for e in events]


def detail(state: Projection, pid: int, events: Sequence[Any]) -> dict[str, Any] | None:
    p = state.promises.get(pid)
    if p is None:
        return None
    out = row(p, state)
    out["headline"] = story.headline(p)
    out["fields"] = [[k, v] for k, v in render.fields(p)]
    out["events"] = [msgspec.to_builtins(e) for e in events]
    out["timeline"] = timeline(events)
    out["evidence"] = evidence.lines(p.evidence)
    out["graph"] = graph(state, pid)
    return out


# --- the dependency graph ---------------------------------------------------------------


def component(state: Projection, focus: int, limit: int = GRAPH_LIMIT) -> list[int]:
    """Promises linked to ``focus`` by dependencies either way, nearest first, at most ``limit``."""
    seen = {focus: None}
    frontier = [focus]
    while frontier and len(seen) < limit:
        nxt = []
        for pid in frontier:
            p = state.promises.get(pid)
            parents = list(p.spec.depends_on) if p else []
            for other in parents + state.dependents.get(pid, []):
                if other not in seen and len(seen) < limit:
                    seen[other] = None
                    nxt.append(other)
        frontier = nxt
    return list(seen)


def layers(state: Projection, nodes: Sequence[int]) -> dict[int, int]:
    """Depth of each node: 0 without a parent in ``nodes``, else one more than its deepest parent."""
    inside = set(nodes)
    depth: dict[int, int] = {}

    def parents(pid: int) -> list[int]:
        p = state.promises.get(pid)
        return [d for d in (p.spec.depends_on if p else ()) if d in inside]

    for start in sorted(inside):
        stack = [start]  # iterative DFS: a deep chain must not hit the recursion limit
        while stack:
            pid = stack[-1]
            if pid in depth:
                stack.pop()
                continue
            todo = [d for d in parents(pid) if d not in depth and d not in stack]
            if todo:
                stack.extend(todo)
                continue
            stack.pop()
            depth[pid] = 1 + max((depth.get(d, 0) for d in parents(pid)), default=-1)
    return depth


def graph(state: Projection, focus: int, limit: int = GRAPH_LIMIT) -> dict[str, Any]:
    nodes = component(state, focus, limit)
    depth = layers(state, nodes)
    inside = set(nodes)
    edges = []
    for pid in sorted(inside):
        p = state.promises.get(pid)
        edges += [{"from": d, "to": pid} for d in (p.spec.depends_on if p else ()) if d in inside]
    row_of: dict[int, float] = {}
    by_layer: dict[int, list[int]] = {}
    for pid in sorted(inside, key=lambda i: (depth[i], i)):
        by_layer.setdefault(depth[pid], []).append(pid)
    parents_of: dict[int, list[int]] = {}
    for e in edges:
        parents_of.setdefault(e["to"], []).append(e["from"])

    def weight(pid: int) -> tuple[float, int]:
        """Barycentre of the parents' rows: a child sits near its parents, fewer crossings."""
        rows = [row_of[d] for d in parents_of.get(pid, ()) if d in row_of]
        return (sum(rows) / len(rows) if rows else float("inf"), pid)

    for level in sorted(by_layer):
        for i, pid in enumerate(sorted(by_layer[level], key=weight)):
            row_of[pid] = i
    out_nodes = []
    for pid in nodes:
        p = state.promises.get(pid)
        out_nodes.append({
            "id": pid,
            "state": p.state if p else "unknown",
            "type": p.spec.task if p else "",
            "title": p.spec.title if p else "(unknown)",
            "focus": pid == focus,
            "layer": depth[pid],
            "row": int(row_of[pid]),
            "x": MARGIN + depth[pid] * COL_W,
            "y": MARGIN + int(row_of[pid]) * ROW_H,
        })
    width = MARGIN * 2 + max(n["x"] for n in out_nodes) - MARGIN + NODE_W
    height = MARGIN * 2 + max(n["y"] for n in out_nodes) - MARGIN + NODE_H
    return {"nodes": out_nodes, "edges": edges, "width": width, "height": height,
            "node_width": NODE_W, "node_height": NODE_H, "truncated": len(nodes) >= limit}
