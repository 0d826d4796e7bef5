"""Whose ready promise a queue's free slot goes to: strict priority, then turns between chats.

Pure.  A queue's ready promises are grouped by chat (``Created.chat_id``;
promises without a chat, such as the CLI's, are one group of their own,
``None``).  ``turns`` yields them in dispatch order:

- a higher priority (a lower number) always goes first, whichever chat it is in;
- within a priority, chats take turns: the chat served least recently goes
  first (one never served before any served one; between those, the one whose
  oldest promise is older), then the next, round-robin, one promise per turn;
- within a chat, oldest (lowest id) first.

"Served" is the projection's mark of a chat's last dispatch on the queue
(``Projection.served``), so turns carry over from one decision round to the
next: a chat whose 50-step plan just took the slots goes after a chat that
has waited with one task, even though its promises are older.  The order is
produced lazily, so a decision round with one free slot reads one promise per
chat, not the whole backlog.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping

from promises.projection import Group


def turns(groups: Mapping[Group, Iterable[tuple[int, int]]], served: Mapping[Group, int]) -> Iterator[int]:
    """Promise ids in dispatch order.

    ``groups``: each chat's ready promises as (priority, id), sorted.
    ``served``: each chat's mark of its last dispatch (a higher mark is more
    recent; a chat missing from it was never served).
    """
    rest: dict[Group, Iterator[tuple[int, int]]] = {}
    heap: list[tuple[int, int, int, Group]] = []
    for group, items in groups.items():
        it = iter(items)
        head = next(it, None)
        if head is not None:
            rest[group] = it
            heap.append((head[0], served.get(group, 0), head[1], group))
    heapq.heapify(heap)
    # Turns taken in this call are more recent than any recorded one.  Ids are unique,
    # so entries never compare further than the id (a None group never meets an int).
    mark = max(served.values(), default=0)
    while heap:
        _, _, pid, group = heapq.heappop(heap)
        yield pid
        head = next(rest[group], None)
        if head is not None:
            mark += 1
            heapq.heappush(heap, (head[0], mark, head[1], group))
