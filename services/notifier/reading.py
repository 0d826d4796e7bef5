"""What the notifier reads of the log: only the kinds of event its board folds.

Every event delivered costs a reader nats-py's per-message work (~20 µs on the
shipped stack) whatever it then does with it, and the board ignores
``dispatched`` (a quarter of a no-op promise's events), the instructions and
budget facts and ``attempt_stopped``.  So the notifier's consumer filters on the
kinds the board folds (``FOLDED``), and an event of a promise the board does not
hold (one not born from a chat) is skipped before it is decoded: only its
``created`` can add it, and everything else about it would change nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Container

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from schemas import subjects

# The event kinds Board.apply acts on; tests/chat/test_notifier_reading.py holds every other kind to no effect.
FOLDED = (
    "created", "approved", "started", "progress", "attempt_failed", "retry_scheduled", "succeeded", "failed",
    "cancelled", "spawned", "notice_intended", "notified", "notice_failed", "input_edited", "request_deleted",
)


def filters() -> list[str]:
    return [subjects.promise("*", name) for name in FOLDED]


async def last_seq(js: JetStreamContext) -> int:
    """The stream sequence of the last event of a folded kind in the log; 0 when there is none.

    Where the notifier's replay ends: the last event of the log itself may be one it is never sent.
    """

    async def last(subject: str) -> int:
        try:
            return (await js.get_last_msg(subjects.PROMISES, subject)).seq or 0
        except NotFoundError:
            return 0

    return max(await asyncio.gather(*map(last, filters())), default=0)


def skippable(subject: str, known: Container[int]) -> bool:
    """An event, by its subject alone, that cannot change a board holding the promise ids ``known``."""
    promise_id = subjects.promise_id_of(subject)
    return promise_id is not None and promise_id not in known and not subject.endswith(".created")
