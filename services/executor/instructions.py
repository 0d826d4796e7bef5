"""Instructions the user adds to a promise, on their way into its attempt.

The scheduler records ``instructions_added``; a work item carries those
recorded before it was dispatched.  The executor also listens on
``promise.*.instructions_added`` (a core subscription, like cancels), so it
hears the ones recorded later: ``Heard`` remembers them for attempts that have
not started yet, and a running attempt gets them through its ``Instructions``.

What an attempt knows when its handler starts is ``Instructions.before`` (a
Claude Code prompt joins them to the input); what arrives while it runs comes
out of ``Instructions.next()`` in the order heard, and the handler calls
``delivered`` once the task took one in, which records
``instructions_delivered``.  Each instruction counts once (its request id),
however many ways it arrived.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable

from schemas.events import InstructionsAdded

from .cancellations import CLOCK_MARGIN

REMEMBERED = 10_000  # promises whose instructions are kept; older ones are in the log if ever needed

Record = Callable[[InstructionsAdded], Awaitable[None]]


async def _not_recorded(instruction: InstructionsAdded) -> None:
    return None


class Heard:
    """What this executor heard on ``promise.*.instructions_added`` since it started listening."""

    def __init__(self, listening_since: float) -> None:
        self.listening_since = listening_since
        self._by_promise: OrderedDict[int, list[InstructionsAdded]] = OrderedDict()

    def heard(self, instruction: InstructionsAdded) -> None:
        kept = self._by_promise.setdefault(instruction.id, [])
        if all(i.request_id != instruction.request_id for i in kept):
            kept.append(instruction)
        self._by_promise.move_to_end(instruction.id)
        while len(self._by_promise) > REMEMBERED:
            self._by_promise.popitem(last=False)

    def of(self, promise_id: int) -> list[InstructionsAdded]:
        return list(self._by_promise.get(promise_id, ()))

    def cover(self, queued_at: float) -> bool:
        """True when every instruction missing from a work item queued at ``queued_at`` reached us.

        One recorded after the item was built was stored after it was queued, or
        just before in the same scheduler round: past our start either way.
        """
        return queued_at >= self.listening_since + CLOCK_MARGIN


class Instructions:
    """One attempt's instructions: those known when it starts, then the ones heard while it runs."""

    def __init__(self, before: Iterable[InstructionsAdded] = (), record: Record = _not_recorded) -> None:
        self.before: list[InstructionsAdded] = []
        self._known: set[str] = set()
        self._queue: asyncio.Queue[InstructionsAdded] = asyncio.Queue()
        self._record = record
        self._started = False
        self.add(before)

    def add(self, instructions: Iterable[InstructionsAdded]) -> None:
        """Instructions that reached the attempt (its work item, the log, the subscription), in log order."""
        for i in instructions:
            if i.request_id in self._known:
                continue
            self._known.add(i.request_id)
            if self._started:
                self._queue.put_nowait(i)
            else:
                self.before.append(i)
        self.before.sort(key=lambda i: i.at)  # arrived by several ways: the order they were recorded in

    def start(self) -> None:
        """From now on the handler runs: what arrives is for ``next()``."""
        self._started = True

    @property
    def texts(self) -> list[str]:
        return [i.text for i in self.before]

    async def next(self) -> InstructionsAdded:
        """The next instruction that arrived while the attempt runs (waits for one)."""
        return await self._queue.get()

    async def delivered(self, instruction: InstructionsAdded) -> None:
        """The task took ``instruction`` in: record it."""
        await self._record(instruction)
