"""How an executor's slots are split between its queues (``--slots``).  Pure.

- ``respond=2,code=2,default=4``: each named queue has slots of its own, which
  no attempt of another queue ever takes, so a reply never waits behind
  background work and the scheduler's capacity per queue is exact.
- ``4``: one pool of four shared by every queue served, as it always meant.
- ``respond=2,4``: respond has two of its own; the other queues share four.

Without ``--queues``, the queues served are the ones named, plus ``default``
for a plain number.  With it, every queue listed needs slots (its own or the
shared number), and slots for a queue it does not list are refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from schemas.commands import SlotPool

from .config import is_token

DEFAULT_QUEUE = "default"


class SlotsError(ValueError):
    pass


@dataclass(frozen=True)
class Pool:
    queues: tuple[str, ...]
    slots: int


def parse(text: str) -> tuple[dict[str, int], int | None]:
    """``"respond=2,4"`` -> ({"respond": 2}, 4): each queue's own slots, and the shared number."""
    own: dict[str, int] = {}
    shared: int | None = None
    entries = [e.strip() for e in text.split(",") if e.strip()]
    if not entries:
        raise SlotsError("no slots given: use a number (4) or queue=number pairs (respond=2,default=4)")
    for entry in entries:
        name, eq, number = entry.rpartition("=")
        count = _count(number, entry)
        if not eq:
            if shared is not None:
                raise SlotsError(f"two shared numbers ({shared} and {count}): give at most one")
            shared = count
            continue
        name = name.strip()
        if not is_token(name):
            raise SlotsError(f"invalid queue name {name!r} in {entry!r}: use letters, digits, '-' and '_'")
        if name in own:
            raise SlotsError(f"queue {name!r} is given slots twice")
        own[name] = count
    return own, shared


def _count(number: str, entry: str) -> int:
    try:
        count = int(number.strip())
    except ValueError:
        raise SlotsError(f"{entry!r}: slots must be a whole number") from None
    if count < 1:
        raise SlotsError(f"{entry!r}: slots must be at least 1")
    return count


def pools_for(spec: int | str | Mapping[str, int], queues: Sequence[str] | None = None) -> list[Pool]:
    """The pools of an executor serving ``queues`` (``None``: the queues ``spec`` implies)."""
    if isinstance(spec, bool):
        raise SlotsError(f"slots must be a number or queue=number pairs, not {spec!r}")
    if isinstance(spec, int):
        if spec < 1:
            raise SlotsError("slots must be at least 1")
        own, shared = {}, spec
    elif isinstance(spec, str):
        own, shared = parse(spec)
    else:
        own, shared = parse(",".join(f"{q}={n}" for q, n in spec.items()))
    if queues is None:
        queues = list(own) + ([DEFAULT_QUEUE] if shared is not None and DEFAULT_QUEUE not in own else [])
    queues = list(dict.fromkeys(queues))
    if not queues:
        raise SlotsError("an executor needs at least one queue")
    for queue in queues:
        if not is_token(queue):
            raise SlotsError(f"invalid queue name {queue!r}: use letters, digits, '-' and '_'")
    unlisted = [q for q in own if q not in queues]
    if unlisted:
        raise SlotsError(f"slots for {', '.join(unlisted)}, which the queues served ({', '.join(queues)}) "
                         "do not include")
    rest = tuple(q for q in queues if q not in own)
    if rest and shared is None:
        raise SlotsError(f"no slots for {', '.join(rest)}: give each its own (e.g. {rest[0]}=2) "
                         "or add a number they share")
    if not rest and shared is not None:
        raise SlotsError(f"{shared} shared slots, but every queue has its own")
    pools = [Pool((q,), n) for q, n in own.items()]
    return pools + ([Pool(rest, shared)] if rest and shared is not None else [])


def queues_of(pools: Sequence[Pool]) -> list[str]:
    """The queues of ``pools``, in their order."""
    return [q for pool in pools for q in pool.queues]


def spec_of(pools: Sequence[Pool]) -> str:
    """What ``--slots`` would say for ``pools`` (a shared pool as its number): for logs."""
    return ",".join(f"{p.queues[0]}={p.slots}" if len(p.queues) == 1 else str(p.slots) for p in pools)


def sharing(pools: Sequence[Pool] | Sequence[SlotPool], queue: str) -> tuple[str, ...]:
    """The other queues whose attempts may take ``queue``'s slots (none when it has its own)."""
    return next((tuple(q for q in p.queues if q != queue) for p in pools if queue in p.queues), ())
