"""What this executor heard of cancellations, so most attempts need no log read first.

The executor subscribes to ``promise.*.cancelled`` when it starts.  A work item
queued after that moment (with a second of margin for clocks) cannot belong to
a promise cancelled without our hearing of it, so its first delivery runs
without asking the log; older items and redeliveries still ask.
"""

from __future__ import annotations

from collections import deque

CLOCK_MARGIN = 1.0  # seconds between the server's and our clock we tolerate
REMEMBERED = 100_000  # ids kept; older ones are in the log if ever needed


class Cancellations:
    def __init__(self, listening_since: float) -> None:
        self.listening_since = listening_since
        self._ids: set[int] = set()
        self._order: deque[int] = deque()

    def heard(self, promise_id: int) -> None:
        if promise_id in self._ids:
            return
        self._ids.add(promise_id)
        self._order.append(promise_id)
        if len(self._order) > REMEMBERED:
            self._ids.discard(self._order.popleft())

    def __contains__(self, promise_id: int) -> bool:
        return promise_id in self._ids

    def cover(self, queued_at: float) -> bool:
        """True when every cancellation since ``queued_at`` reached us."""
        return queued_at >= self.listening_since + CLOCK_MARGIN
