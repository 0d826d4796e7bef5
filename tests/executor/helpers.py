"""Publishing work and reading a promise's story back from the log, as the scheduler would."""

from __future__ import annotations

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from schemas import subjects
from schemas.commands import WorkItem
from schemas.events import PromiseEvent, decode_promise_event


async def put_work(js: JetStreamContext, item: WorkItem, queue: str = "default") -> None:
    await js.publish(
        subjects.work(queue),
        msgspec.json.encode(item),
        headers={"Nats-Msg-Id": subjects.msg_id_for_work(item.id, item.attempt)},
    )


async def last(js: JetStreamContext, promise_id: int, name: str) -> PromiseEvent | None:
    try:
        raw = await js.get_last_msg(subjects.PROMISES, subjects.promise(promise_id, name))
    except NotFoundError:
        return None
    return decode_promise_event(raw.data)


async def story(js: JetStreamContext, promise_id: int) -> list[PromiseEvent]:
    """Every event of the promise, in log order."""
    events, seq = [], 1
    while True:
        try:
            raw = await js.get_msg(subjects.PROMISES, seq=seq, subject=subjects.promise_all(promise_id), next=True)
        except NotFoundError:
            return events
        events.append(decode_promise_event(raw.data))
        seq = raw.seq + 1


def names(events: list[PromiseEvent]) -> list[str]:
    return [type(e).__struct_config__.tag for e in events]
