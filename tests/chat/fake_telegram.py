"""A fake Telegram: one world, the ingest port and the notifier transport onto it.

Messages are real Telethon ``types.Message`` objects; live ones are delivered
as ``events.NewMessage.Event(message)`` after ``_set_client``, exactly as
Telethon builds them, so ingest parses what the real library parses.  The
fake records what Valor did (``sent``, with the documents it sent, ``edits`` (Valor's own), ``reactions``, ``downloads``)
and can inject flood waits, disconnects, skipped live updates and chats that
refuse Valor for good (``refuse``: chat -> a Telethon error such as ``UserIsBlockedError``).  Photos and
documents are real Telethon media whose bytes the fake keeps (``files``) and
serves to ``download``; a file it no longer has is an RPC error, as on Telegram.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from telethon import events, types
from telethon.errors import BotMethodInvalidError, FloodWaitError, RPCError

from services.notifier.transport import Sent

VALOR_ID = 777


class _EntityCache:
    def get(self, _id):
        return None


class _ClientShim:
    """What ``Message._finish_init`` reads from a client."""

    def __init__(self, self_id: int) -> None:
        self._self_id = self_id
        self._mb_entity_cache = _EntityCache()


@dataclass
class Outgoing:
    chat_id: int
    id: int
    text: str
    reply_to: int | None
    document: tuple[str, bytes] | None = None  # (file name, bytes) of a document, whose caption is ``text``


@dataclass
class FakeTelegram:
    clock: object = None  # () -> float
    me: types.User = field(default_factory=lambda: types.User(id=VALOR_ID, username="valor", first_name="Valor"))
    bot: bool = False
    users: dict[int, types.User] = field(default_factory=dict)
    groups: dict[int, types.Chat] = field(default_factory=dict)  # marked (negative) id -> chat
    history: dict[int, list] = field(default_factory=lambda: defaultdict(list))
    online: bool = True  # False: live updates are lost and calls raise ConnectionError
    skip_live: bool = False  # True: Telethon "missed" these (a gap it gave up on)
    floods: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))  # call -> waits to raise
    refuse: dict[int, type] = field(default_factory=dict)  # chat -> the Telethon error every call to it raises
    sent: list[Outgoing] = field(default_factory=list)
    edits: list[tuple[int, int, str]] = field(default_factory=list)
    reactions: list[tuple[int, int, str]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    listeners: list = field(default_factory=list)
    edit_listeners: list = field(default_factory=list)
    delete_listeners: list = field(default_factory=list)
    gap_listeners: list = field(default_factory=list)
    next_id: int = 100
    files: dict[int, bytes] = field(default_factory=dict)  # photo or document id -> its bytes
    downloads: list[int] = field(default_factory=list)  # message ids whose media was downloaded

    def __post_init__(self) -> None:
        self.shim = _ClientShim(self.me.id)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock() if self.clock else datetime.now(UTC).timestamp(), UTC)

    # --- the world ----------------------------------------------------------------

    def user(self, user_id: int, username: str | None = None, name: str = "") -> types.User:
        self.users[user_id] = types.User(id=user_id, username=username, first_name=name or f"user{user_id}")
        return self.users[user_id]

    def group(self, chat_id: int, title: str = "group") -> int:
        """A basic group; its marked id is negative."""
        self.groups[-chat_id] = types.Chat(id=chat_id, title=title, photo=types.ChatPhotoEmpty(),
                                           participants_count=3, date=self.now(), version=1)
        return -chat_id

    def document(self, name: str | None, data: bytes, mime_type: str = "application/octet-stream",
                 size: int | None = None, voice: bool = False) -> types.MessageMediaDocument:
        """A file as Telegram describes it; ``size`` may announce more (or less) than ``data``."""
        attributes = [types.DocumentAttributeFilename(file_name=name)] if name is not None else []
        if voice:
            attributes.append(types.DocumentAttributeAudio(duration=3, voice=True))
        doc = types.Document(id=10_000 + len(self.files), access_hash=1, file_reference=b"ref", date=self.now(),
                             mime_type=mime_type, size=len(data) if size is None else size, dc_id=2,
                             attributes=attributes)
        self.files[doc.id] = data
        return types.MessageMediaDocument(document=doc, voice=voice or None)

    def photo(self, data: bytes) -> types.MessageMediaPhoto:
        """A photo: Telegram names none; its largest size is what is downloaded."""
        photo = types.Photo(id=10_000 + len(self.files), access_hash=1, file_reference=b"ref", date=self.now(), dc_id=2,
                            sizes=[types.PhotoSize(type="m", w=320, h=240, size=len(data) // 4),
                                   types.PhotoSize(type="y", w=1280, h=960, size=len(data))])
        self.files[photo.id] = data
        return types.MessageMediaPhoto(photo=photo)

    def _entities(self) -> dict:
        ents = {u.id: u for u in self.users.values()}
        ents[self.me.id] = self.me
        ents.update(self.groups)
        return ents

    def _peer(self, chat_id: int):
        return types.PeerUser(chat_id) if chat_id > 0 else types.PeerChat(-chat_id)

    def say(self, chat_id: int, sender_id: int, text: str = "", *, mentioned: bool = False,
            reply_to: int | None = None, media=None, when: datetime | None = None, service: bool = False):
        """Someone writes in a chat; delivered live unless Valor is offline or the update is skipped."""
        self.next_id += 1
        common = dict(id=self.next_id, peer_id=self._peer(chat_id), from_id=types.PeerUser(sender_id),
                      date=when or self.now(), mentioned=mentioned,
                      reply_to=types.MessageReplyHeader(reply_to_msg_id=reply_to) if reply_to else None)
        if service:
            message = types.MessageService(action=types.MessageActionChatEditTitle(title="x"), **common)
        else:
            message = types.Message(message=text, media=media, **common)
        message._finish_init(self.shim, self._entities(), None)
        self.history[chat_id].append(message)
        if self.online and not self.skip_live and not service:
            return message, self._event(message)
        return message, None

    def edit(self, chat_id: int, message_id: int, text: str, when: datetime | None = None):
        """The sender edits a message: history reads the new text; the edit is delivered live when online."""
        old = next(m for m in self.history[chat_id] if m.id == message_id)
        message = types.Message(id=old.id, peer_id=old.peer_id, from_id=old.from_id, date=old.date,
                                message=text, media=old.media, mentioned=old.mentioned, reply_to=old.reply_to,
                                edit_date=when or self.now())
        message._finish_init(self.shim, self._entities(), None)
        self.history[chat_id][self.history[chat_id].index(old)] = message
        if self.online and not self.skip_live:
            return message, self._event(message, events.MessageEdited.Event)
        return message, None

    async def edits_message(self, *args, **kwargs):
        message, event = self.edit(*args, **kwargs)
        if event is not None:
            for listener in list(self.edit_listeners):
                await listener(event.message)
        return message

    async def deletes(self, chat_id: int, message_ids: list[int], chat_known: bool = True) -> None:
        """Messages are deleted; as Telethon gives it, a user account's private chat names no chat."""
        self.history[chat_id] = [m for m in self.history[chat_id] if m.id not in message_ids]
        if self.online and not self.skip_live:
            for listener in list(self.delete_listeners):
                await listener(chat_id if chat_known else None, list(message_ids))

    async def reports_gap(self, chat_id: int | None = None) -> None:
        """Telegram answers the catch-up with a "difference too long": the account's (None) or a channel's."""
        for listener in list(self.gap_listeners):
            await listener(chat_id)

    def _event(self, message, kind=events.NewMessage.Event):
        event = kind(message)
        event._entities = self._entities()
        event._set_client(self.shim)
        return event

    async def deliver(self, event) -> None:
        if event is not None:
            for listener in list(self.listeners):
                await listener(event.message)

    async def says(self, *args, **kwargs):
        message, event = self.say(*args, **kwargs)
        await self.deliver(event)
        return message

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if not self.online:
            raise ConnectionError("fake Telegram is offline")
        if self.floods[name]:
            raise FloodWaitError(request=None, capture=self.floods[name].pop(0))

    def _call_chat(self, name: str, chat_id: int) -> None:
        self._call(name)
        if (error := self.refuse.get(chat_id)) is not None:
            self.calls.append(f"refused:{chat_id}")
            raise error(request=None)

    # --- ports ------------------------------------------------------------------------

    def inbound(self) -> FakeInbound:
        return FakeInbound(self)

    def transport(self) -> FakeTransport:
        return FakeTransport(self)

    def messages_to(self, chat_id: int) -> list[Outgoing]:
        return [s for s in self.sent if s.chat_id == chat_id]


class FakeInbound:
    def __init__(self, world: FakeTelegram) -> None:
        self.world = world

    async def connect(self) -> None:
        self.world._call("connect")

    async def listen(self, on_message, on_edit=None, on_deleted=None, on_gap=None) -> None:
        self.world.listeners.append(on_message)
        if on_gap is not None:
            self.world.gap_listeners.append(on_gap)
        if on_edit is not None:
            self.world.edit_listeners.append(on_edit)
        if on_deleted is not None:
            self.world.delete_listeners.append(on_deleted)

    async def me(self):
        self.world._call("get_me")
        return types.User(id=self.world.me.id, username=self.world.me.username, first_name="Valor",
                          bot=self.world.bot)

    async def dialogs(self, limit: int):
        self.world._call("dialogs")
        if self.world.bot:
            raise BotMethodInvalidError(request=None)
        chats = [c for c, msgs in self.world.history.items() if msgs][:limit]
        return [(c, self.world.users.get(c) if c > 0 else self.world.groups[c]) for c in chats]

    async def history(self, chat_id: int, min_id: int, since: datetime | None, limit: int):
        self.world._call("history")
        if self.world.bot:
            raise RuntimeError("bots cannot read history")
        found = [m for m in self.world.history.get(chat_id, [])
                 if m.id > min_id and (min_id or since is None or m.date > since)]
        for message in sorted(found, key=lambda m: m.id)[:limit]:
            yield message

    async def download(self, message, path) -> None:
        self.world._call("download")
        media = message.media
        item = getattr(media, "photo", None) or getattr(media, "document", None)
        if item is None or item.id not in self.world.files:
            raise RPCError(request=None, message="FILE_REFERENCE_INVALID", code=400)
        data = self.world.files[item.id]
        with open(path, "wb") as out:
            for start in range(0, len(data), 4):  # in parts, letting others run between them, as Telethon does
                out.write(data[start:start + 4])
                out.flush()
                await asyncio.sleep(0)
        self.world.downloads.append(message.id)

    async def send(self, chat_id: int, text: str, reply_to: int | None) -> int:
        """Ingest's own message (the chat told its messages are held): sent like the notifier's."""
        return await FakeTransport(self.world).send(chat_id, text, reply_to)

    async def stop(self) -> None:
        self.world.listeners.clear()
        self.world.edit_listeners.clear()
        self.world.delete_listeners.clear()
        self.world.gap_listeners.clear()


class FakeTransport:
    def __init__(self, world: FakeTelegram) -> None:
        self.world = world
        self.can_read_history = not world.bot

    async def connect(self) -> None:
        pass

    async def send(self, chat_id: int, text: str, reply_to: int | None) -> int:
        self.world._call_chat("send", chat_id)
        self.world.next_id += 1
        out = Outgoing(chat_id, self.world.next_id, text, reply_to)
        self.world.sent.append(out)
        return out.id

    async def send_document(self, chat_id: int, caption: str, name: str, data: bytes, reply_to: int | None) -> int:
        self.world._call_chat("send_document", chat_id)
        self.world.next_id += 1
        out = Outgoing(chat_id, self.world.next_id, caption, reply_to, document=(name, data))
        self.world.sent.append(out)
        return out.id

    async def edit(self, chat_id: int, message_id: int, text: str) -> None:
        self.world._call_chat("edit", chat_id)
        self.world.edits.append((chat_id, message_id, text))

    async def react(self, chat_id: int, message_id: int, emoji: str) -> None:
        self.world._call_chat("react", chat_id)
        self.world.reactions.append((chat_id, message_id, emoji))

    async def recent_own(self, chat_id: int, limit: int) -> list[Sent]:
        self.world._call("recent_own")
        own = [s for s in self.world.sent if s.chat_id == chat_id][-limit:]
        return [Sent(s.id, s.text.strip(), s.reply_to) for s in reversed(own)]

    async def stop(self) -> None:
        pass
