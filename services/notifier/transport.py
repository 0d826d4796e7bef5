"""The few calls the notifier makes to a chat, behind one port.

Implementations: Telethon (its own session, updates off), the local console
(JSON records on ``console.<chat>.out``), and the fake in ``tests/chat``.
Flood waits surface as Telethon's ``FloodWaitError`` (``.seconds``) from every
implementation that can hit one; the outbox waits them out.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from nats.aio.client import Client
from telethon import errors

# Telegram's answers that mean this chat takes nothing from Valor any more (blocked, kicked,
# deleted, no right to write): retrying cannot help, only the chat changing can (decision 52).
UNREACHABLE = (
    errors.UserIsBlockedError, errors.ChatWriteForbiddenError, errors.ChannelPrivateError,
    errors.PeerIdInvalidError, errors.InputUserDeactivatedError, errors.UserKickedError,
    errors.ChannelBannedError, errors.ChatRestrictedError, errors.UserBannedInChannelError,
    errors.ChatIdInvalidError, errors.ChatForbiddenError, errors.ChatAdminRequiredError,
)


def unreachable(exc: BaseException) -> str | None:
    """Why the chat cannot be reached, when ``exc`` is Telegram saying so; else None (try again)."""
    return type(exc).__name__ if isinstance(exc, UNREACHABLE) else None


@dataclass(frozen=True)
class Sent:
    """One of Valor's own recent messages in a chat, for reconciling after a crash."""

    id: int
    text: str
    reply_to: int | None


class Transport(Protocol):
    can_read_history: bool  # False: an intent without `notified` is sent again

    async def connect(self) -> None: ...
    async def send(self, chat_id: int, text: str, reply_to: int | None) -> int: ...
    # One message: a file named ``name`` holding ``data``, with ``caption`` as its text (what reconcile reads).
    async def send_document(self, chat_id: int, caption: str, name: str, data: bytes, reply_to: int | None) -> int: ...
    async def edit(self, chat_id: int, message_id: int, text: str) -> None: ...
    async def react(self, chat_id: int, message_id: int, emoji: str) -> None: ...
    async def recent_own(self, chat_id: int, limit: int) -> list[Sent]: ...
    async def stop(self) -> None: ...


class TelethonTransport:
    def __init__(self, creds, name: str = "notifier") -> None:
        from valor.telegram import telethon_client

        self.client = telethon_client(creds, name, receive_updates=False)
        self.can_read_history = not creds.bot

    async def connect(self) -> None:
        await self.client.connect()
        if not await self.client.is_user_authorized():
            raise RuntimeError("the notifier session is not logged in: run `make login`")
        me = await self.client.get_me()
        self.can_read_history = not me.bot

    async def send(self, chat_id: int, text: str, reply_to: int | None) -> int:
        # parse_mode=None: the text arrives exactly as recorded, so its digest matches on reconcile.
        msg = await self.client.send_message(chat_id, text, reply_to=reply_to, parse_mode=None, link_preview=False)
        return msg.id

    async def send_document(self, chat_id: int, caption: str, name: str, data: bytes, reply_to: int | None) -> int:
        file = io.BytesIO(data)
        file.name = name  # Telethon names the document after it
        msg = await self.client.send_file(chat_id, file, caption=caption, reply_to=reply_to, parse_mode=None,
                                          force_document=True)
        return msg.id

    async def edit(self, chat_id: int, message_id: int, text: str) -> None:
        from telethon.errors import MessageNotModifiedError

        try:
            await self.client.edit_message(chat_id, message_id, text, parse_mode=None, link_preview=False)
        except MessageNotModifiedError:
            pass

    async def react(self, chat_id: int, message_id: int, emoji: str) -> None:
        from telethon import functions, types

        await self.client(functions.messages.SendReactionRequest(
            peer=chat_id, msg_id=message_id, reaction=[types.ReactionEmoji(emoticon=emoji)]))

    async def recent_own(self, chat_id: int, limit: int) -> list[Sent]:
        return [Sent(m.id, m.message or "", m.reply_to_msg_id)
                async for m in self.client.iter_messages(chat_id, from_user="me", limit=limit)]

    async def stop(self) -> None:
        await self.client.disconnect()


def console_out(chat_id: int) -> str:
    return f"console.{chat_id}.out"


class ConsoleTransport:
    """The terminal chat: each action is a JSON record on ``console.<chat>.out``.

    Ids are milliseconds since the epoch (strictly increasing), so they never
    collide with the small ids ingest gives typed lines, even across restarts.
    There is no history to look at: an unconfirmed notice is sent again.
    A document is written under ``documents`` and its path shown with the caption.
    """

    can_read_history = False

    def __init__(self, nc: Client, documents: Path = Path("var/documents")) -> None:
        self.nc = nc
        self.documents = documents
        self._last_id = 0

    async def connect(self) -> None:
        pass

    def _next_id(self) -> int:
        self._last_id = max(self._last_id + 1, int(time.time() * 1000))
        return self._last_id

    async def _out(self, chat_id: int, record: dict) -> None:
        await self.nc.publish(console_out(chat_id), json.dumps(record, ensure_ascii=False).encode())

    async def send(self, chat_id: int, text: str, reply_to: int | None) -> int:
        message_id = self._next_id()
        await self._out(chat_id, {"op": "sent", "id": message_id, "reply_to": reply_to, "text": text})
        return message_id

    async def send_document(self, chat_id: int, caption: str, name: str, data: bytes, reply_to: int | None) -> int:
        message_id = self._next_id()
        path = self.documents / str(message_id) / name  # a folder per message: a resent one never overwrites
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        await self._out(chat_id, {"op": "sent", "id": message_id, "reply_to": reply_to, "text": caption,
                                  "document": str(path.resolve())})
        return message_id

    async def edit(self, chat_id: int, message_id: int, text: str) -> None:
        await self._out(chat_id, {"op": "edited", "id": message_id, "text": text})

    async def react(self, chat_id: int, message_id: int, emoji: str) -> None:
        await self._out(chat_id, {"op": "reacted", "id": message_id, "emoji": emoji})

    async def recent_own(self, chat_id: int, limit: int) -> list[Sent]:
        return []

    async def stop(self) -> None:
        pass
