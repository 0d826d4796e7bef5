"""Reading a chat's context from NATS: its recent messages and its promises.

The only module of the agents that does I/O on the log.  Messages come from
``chat.<id>.in`` on CHAT (the last few, read back from the end), promises
from the scheduler's served read model (the log folded here when no
scheduler answers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import msgspec
from nats.aio.client import Client
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from promises.projection import Promise
from schemas import subjects
from schemas.events import MessageReceived, PromiseEvent, decode_message
from valor import bus
from valor.budget import Budget
from valor.client import ValorClient
from valor.readmodel import ChatQuery, PromisesQuery

from .view import ChatView, chat_view, view_of

READ_TIMEOUT = 30.0
WINDOW = 256  # stream sequences in the first window read back from a chat's last message


async def read_messages(nc: Client, chat_id: int, limit: int, before: int | None = None) -> list[MessageReceived]:
    """The last ``limit`` messages of the chat with a message id below ``before``, oldest first.

    Read backwards from the subject's last message (a direct get by subject) in
    windows of the stream that grow fourfold: each window is one filtered
    reader that the stream's subject index serves, so the cost follows the
    messages read, not the chat's (or the stream's) whole history.
    """
    if limit <= 0:
        return []
    js = nc.jetstream()
    subject = subjects.chat_in(chat_id)
    try:
        last = (await js.get_last_msg(subjects.CHAT, subject)).seq
    except NotFoundError:
        return []  # an empty subject would never deliver
    window = max(WINDOW, 4 * limit)
    while True:
        start = max(1, last - window + 1)
        kept = [m for m in await _read_from(js, subject, start)
                if before is None or m.message_id < before]
        if len(kept) >= limit or start == 1:
            return sorted(kept, key=lambda m: m.message_id)[-limit:]
        window *= 4


async def _read_from(js, subject: str, start: int) -> list[MessageReceived]:
    """Every message on ``subject`` at or after stream sequence ``start`` (one exists: the last)."""
    out: list[MessageReceived] = []
    done = asyncio.Event()

    async def on_msg(msg) -> None:
        try:
            out.append(decode_message(msg.data))
        except msgspec.DecodeError:
            pass
        if msg.metadata.num_pending == 0:
            done.set()

    sub = await js.subscribe(subject, stream=subjects.CHAT, cb=on_msg, ordered_consumer=True,
                             config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                                   opt_start_seq=start))
    try:
        await asyncio.wait_for(done.wait(), READ_TIMEOUT)
    finally:
        await bus.stop_reading(js, sub, subjects.CHAT)
    return out


async def read_chat(nc: Client, chat_id: int, history: int = 0, before: int | None = None,
                    about: Iterable[int] = (), reply_to: int | None = None, spend: bool = False,
                    user_id: int | None = None, now: float = 0.0, budgets: Iterable[Budget] = ()) -> ChatView:
    """What a message of the chat can be about and, when ``history`` > 0, its recent messages.

    The promises come from the scheduler's served chat answer (decisions 48 and 75): the chat's
    newest open and newest work promises, those in ``about`` and the one the Valor message
    ``reply_to`` is about, with their relatives; the events of those in ``about`` (and more, on
    demand, through ``ChatView.load_events``) from each promise's own subject.  With no scheduler
    answering, the log is folded here into the same answer.  With ``spend``, the view also holds
    the chat's spend at ``now``, with ``user_id`` that user's in every chat, and where ``budgets``
    stand (``/usage``, ``/budget``), summed by the read.
    """
    client = ValorClient(nc)
    messages = await read_messages(nc, chat_id, history, before) if history else []
    about = list(about)
    query = ChatQuery(chat_id=chat_id, about=about, reply_to=reply_to, spend=spend, user_id=user_id, now=now,
                      budgets=list(budgets))
    served = await client.served(query)
    if served is None:
        return chat_view(await client.events(), chat_id, messages, query=query)

    async def read_events(ids: list[int]) -> dict[int, list[PromiseEvent]]:
        logs = await asyncio.gather(*(client.events(subjects.promise_all(i)) for i in ids))
        return {i: [e for _, e in log] for i, log in zip(ids, logs, strict=True)}

    async def read_promises(ids: list[int]) -> list[Promise]:
        return (await client.read(PromisesQuery(ids=ids, chat_id=chat_id))).promises

    view = view_of(served, chat_id, messages, read_events)
    view.read_promises = read_promises
    await view.load_events(about)
    return view
