"""The few Telegram calls Valor makes, behind one port.

``Inbound`` is what ingest needs from a Telegram client: who we are, the
dialogs, history after a message id, live new and edited messages, and a message's photo
or document downloaded to a file; and one message sent (``Notices``): the chat told that
what it sent is held while the cluster has no quorum (decision 77).  Messages are
real Telethon ``Message`` objects in every implementation (the Telethon one
here, the fake in ``tests/chat``), so parsing is Telethon's own.

The account itself (credentials, session files, the Telethon client) is
``valor/telegram.py``'s: the notifier uses it too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from valor.telegram import Credentials, telethon_client

OnMessage = Callable[[Any], Awaitable[None]]  # called with a telethon Message
OnDeleted = Callable[[int | None, list[int]], Awaitable[None]]  # chat id (None: Telegram did not say), message ids
OnGap = Callable[[int | None], Awaitable[object]]  # a channel's marked id, or None: the account's own updates


class Notices(Protocol):
    async def send(self, chat_id: int, text: str, reply_to: int | None) -> object: ...


class Inbound(Notices, Protocol):
    async def connect(self) -> None: ...
    # live messages (and edits of messages, ``on_edit``), after a catch-up
    # ``on_gap``: Telegram said the updates missed are too many to give (a "difference too long")
    async def listen(self, on_message: OnMessage, on_edit: OnMessage | None = None,
                     on_deleted: OnDeleted | None = None, on_gap: OnGap | None = None) -> None: ...
    async def me(self) -> Any: ...  # a telethon User
    async def dialogs(self, limit: int) -> list[tuple[int, Any]]: ...  # (chat id, entity)
    def history(self, chat_id: int, min_id: int, since: datetime | None, limit: int) -> AsyncIterator[Any]: ...
    async def download(self, message: Any, path: Path) -> None: ...  # the message's media, whole, at path
    async def stop(self) -> None: ...


class TelethonInbound:
    """A user or bot account with updates on and ``catch_up=True``.

    Telethon reconnects by itself (``connection_retries=-1``) and fetches the
    difference after a reconnect; gaps it gives up on are filled by the backfill.
    """

    def __init__(self, creds: Credentials, name: str = "ingest") -> None:
        self.creds = creds
        self.client = telethon_client(creds, name)
        self._gap_tasks: set = set()

    async def connect(self) -> None:
        await self.client.connect()
        if not await self.client.is_user_authorized():
            raise RuntimeError("the ingest session is not logged in: run `make login`")

    async def listen(self, on_message: OnMessage, on_edit: OnMessage | None = None,
                     on_deleted: OnDeleted | None = None, on_gap: OnGap | None = None) -> None:
        from telethon import events

        async def handler(event) -> None:
            await on_message(event.message)

        self.client.add_event_handler(handler, events.NewMessage())
        if on_edit is not None:
            async def edited(event) -> None:
                await on_edit(event.message)

            self.client.add_event_handler(edited, events.MessageEdited())
        if on_deleted is not None:
            async def deleted(event) -> None:
                # A user account's private chats and basic groups: ids only, no chat.
                await on_deleted(event.chat_id, list(event.deleted_ids))

            self.client.add_event_handler(deleted, events.MessageDeleted())
        if on_gap is not None:
            watch_gaps(self.client._message_box, on_gap, self._gap_tasks)
        await self.client.catch_up()

    async def me(self):
        return await self.client.get_me()

    async def dialogs(self, limit: int) -> list[tuple[int, Any]]:
        return [(d.id, d.entity) async for d in self.client.iter_dialogs(limit=limit)]

    def history(self, chat_id: int, min_id: int, since: datetime | None, limit: int):
        # reverse=True: oldest first, so a capped read still advances the cursor in order.
        # Telegram ignores offset_date when an id offset is given; the caller filters by date.
        return self.client.iter_messages(chat_id, min_id=min_id, offset_date=None if min_id else since,
                                         reverse=True, limit=limit)

    async def download(self, message, path: Path) -> None:
        # A stream, not a path: given a path, Telethon picks its own name when the file exists.
        with open(path, "wb") as out:
            if await self.client.download_media(message, file=out) is None:
                raise RuntimeError("the message has no media to download")

    async def send(self, chat_id: int, text: str, reply_to: int | None) -> int:
        # Through ingest's own session: the notifier, which sends everything else, learns of a message
        # only once it is stored, and this is said because it cannot be.
        msg = await self.client.send_message(chat_id, text, reply_to=reply_to, parse_mode=None, link_preview=False)
        return msg.id

    async def stop(self) -> None:
        await self.client.disconnect()


def watch_gaps(box, on_gap: OnGap, tasks: set) -> None:
    """Call ``on_gap`` whenever Telethon's update state (its ``MessageBox``) takes a "too long" difference.

    Telethon handles ``updates.differenceTooLong`` and ``updates.channelDifferenceTooLong``
    by moving its state past the gap and telling no one; its methods that apply a
    difference are where that is seen, so the box becomes a subclass that looks first (tested against the real
    class, tests/chat/test_bot_gaps.py, so a Telethon upgrade that moves them fails there).
    """
    import asyncio

    from telethon import types, utils

    def report(chat_id: int | None) -> None:
        task = asyncio.get_running_loop().create_task(on_gap(chat_id))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    class Watched(type(box)):
        __slots__ = ()  # the same layout: the box keeps its state, only its class changes

        def apply_difference(self, diff, chat_hashes):
            if isinstance(diff, types.updates.DifferenceTooLong):
                report(None)
            return super().apply_difference(diff, chat_hashes)

        def apply_channel_difference(self, request, diff, chat_hashes):
            if isinstance(diff, types.updates.ChannelDifferenceTooLong):
                report(utils.get_peer_id(types.PeerChannel(request.channel.channel_id)))
            return super().apply_channel_difference(request, diff, chat_hashes)

    box.__class__ = Watched
