"""How many attempts of each queue may run at once, from the executors' heartbeats.  Pure.

A pool of slots that serves one queue counts for that queue alone, so the
capacity of a queue with slots of its own is exact: WORK never holds more of
it than those slots take (plus ``dispatch_ahead``), and no other queue's work
can hold them.  A pool shared by several queues counts whole for each of them,
since an attempt of any may take it: their capacities add up to more than can
run, and the surplus waits in WORK, in arrival order, until a shared slot frees.
"""

from __future__ import annotations

from collections.abc import Iterable

from schemas.commands import ExecutorHeartbeat


def slots_per_queue(heartbeats: Iterable[ExecutorHeartbeat], now: float, ttl: float) -> dict[str, int]:
    """Queue -> slots of the executors heard from within ``ttl`` seconds."""
    slots: dict[str, int] = {}
    for hb in heartbeats:
        if now - hb.at > ttl:
            continue
        for pool in hb.slot_pools():
            for queue in pool.queues:
                slots[queue] = slots.get(queue, 0) + pool.slots
    return slots
