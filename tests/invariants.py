"""Checks of the log alone: what must hold after any crash, kill or restart."""

from __future__ import annotations

from collections import Counter

from schemas.events import Created, Started, Succeeded
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
    for seq, e in events:
        if isinstance(e, Started):
            for dep in state.promises[e.id].spec.depends_on:
                if succeeded_at.get(dep, float("inf")) > seq:
                    found.append(f"#{e.id} started before its dependency #{dep} succeeded")
    return found
