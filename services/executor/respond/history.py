"""Reading a chat's context from NATS: its recent messages and its promises.

The only module of the agents that does I/O on the log.  Messages come from
``chat.<id>.in`` on CHAT, promises from the PROMISES log folded with the
scheduler's projection (``view.chat_view``).
"""

from __future__ import annotations

import asyncio
from collections import deque

import msgspec
from nats.aio.client import Client
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

from schemas import subjects
from schemas.events import MessageReceived, decode_message
from valor.client import ValorClient

from .view import ChatView, chat_view

READ_TIMEOUT = 30.0


async def read_messages(nc: Client, chat_id: int, limit: int, before: int | None = None) -> list[MessageReceived]:
    """The last ``limit`` messages of the chat with a message id below ``before``, oldest first."""
    if limit <= 0:
        return []
    js = nc.jetstream()
    subject = subjects.chat_in(chat_id)
    try:
        await js.get_last_msg(subjects.CHAT, subject)
    except NotFoundError:
        return []  # an empty subject would never deliver
    kept: deque[MessageReceived] = deque(maxlen=limit)
    done = asyncio.Event()

    async def on_msg(msg) -> None:
        try:
            m = decode_message(msg.data)
        except msgspec.DecodeError:
            m = None
        if m is not None and (before is None or m.message_id < before):
            kept.append(m)
        if msg.metadata.num_pending == 0:
            done.set()

    sub = await js.subscribe(subject, stream=subjects.CHAT, cb=on_msg, ordered_consumer=True,
                             deliver_policy=DeliverPolicy.ALL)
    try:
        await asyncio.wait_for(done.wait(), READ_TIMEOUT)
    finally:
        await sub.unsubscribe()
    return sorted(kept, key=lambda m: m.message_id)


async def read_chat(nc: Client, chat_id: int, history: int = 0, before: int | None = None) -> ChatView:
    """The chat's promises (with their events) and, when ``history`` > 0, its recent messages."""
    events = await ValorClient(nc).events()
    messages = await read_messages(nc, chat_id, history, before) if history else []
    return chat_view(events, chat_id, messages)
