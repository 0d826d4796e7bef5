"""What decisions ask the service shell to do; the shell only performs them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import msgspec

from schemas.commands import WorkItem


class Publish(NamedTuple):
    """Store an event on PROMISES.  ``new_subject`` guards id allocation."""

    event: msgspec.Struct
    msg_id: str
    new_subject: bool = False


class Dispatch(NamedTuple):
    """Hand an attempt to executors on ``work.<queue>`` (after its ``dispatched``)."""

    queue: str
    item: WorkItem
    msg_id: str


Effect = Publish | Dispatch


def ids_taken(effects: Iterable[Effect]) -> int:
    """How many new promise ids these effects allocate (one per guarded ``created``)."""
    return sum(1 for e in effects if isinstance(e, Publish) and e.new_subject)
