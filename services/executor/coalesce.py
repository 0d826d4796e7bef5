"""Writes of all running attempts go out together, a millisecond or two at a time.

Every JetStream write on the durable cluster pays for a raft round with an
fsync on three nodes (~0.8 ms of server CPU, measured in ``make bench``),
however many messages the round carries, and only ~25 µs more per message.
Attempts that finish a millisecond apart would each pay for a round of their
own; holding their writes for a short window lets one round carry them all.
Alone, a write has nobody to share a round with: it goes at once, so light
load pays no latency for the window.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Window:
    """``await window.join()`` returns when the current window closes, together with every
    other caller that joined it, so their publishes leave in one socket write."""

    def __init__(self, seconds: float, crowd: Callable[[], int] = lambda: 2) -> None:
        self.seconds = seconds
        self.crowd = crowd  # how many could write now (attempts running)
        self._open: asyncio.Future[None] | None = None

    async def join(self) -> None:
        if self.seconds <= 0 or (self._open is None and self.crowd() <= 1):
            return
        if self._open is None:
            loop = asyncio.get_running_loop()
            self._open = loop.create_future()
            loop.call_later(self.seconds, self._close, self._open)
        await asyncio.shield(self._open)  # one caller cancelled must not close it for the rest

    def _close(self, window: asyncio.Future[None]) -> None:
        if self._open is window:
            self._open = None
        if not window.done():
            window.set_result(None)
