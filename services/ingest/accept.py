"""Which Telegram messages Valor acts on, and what it records about them.  Pure.

``accept(message, me, rules)`` reads a Telethon ``Message`` (live or from
history) and returns a ``MessageReceived`` or the reason it was refused:
only allowlisted senders, only allowed chats; in a group only when Valor is
mentioned or replied to, unless it is a work group; never our own or service
messages.  A photo or document becomes an ``Attachment`` to save into the
chat's workspace (``inbox.py``; over ``telegram.attachment_max_bytes`` it is
recorded as skipped) and the text is its caption; other media are passed on as
a placeholder plus caption.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from telethon import types, utils

from schemas.events import Attachment, MessageReceived, MessagesSkipped, encode
from valor.config import Config, Telegram

from . import inbox

# A message.received travels again inside its respond promise and work item, each
# one NATS message (1 MiB by default): keep it well under, whatever the escaping costs.
MAX_EVENT_BYTES = 256 * 1024

SKIPPED_TEXTS = 3  # texts a skipped-messages summary quotes
SKIPPED_TEXT_CHARS = 120
SKIPPED_KEPT = 50  # skipped messages kept whole in the summary, for a "run them" reply
SKIPPED_KEPT_BYTES = MAX_EVENT_BYTES - 8 * 1024  # and at most this much of them encoded: the fact is one event

MEDIA_NAMES = {
    types.MessageMediaPhoto: "photo",
    types.MessageMediaDocument: "file",
    types.MessageMediaGeo: "location",
    types.MessageMediaGeoLive: "live location",
    types.MessageMediaContact: "contact",
    types.MessageMediaPoll: "poll",
    types.MessageMediaVenue: "venue",
    types.MessageMediaDice: "dice",
}


@dataclass(frozen=True)
class Rules:
    user_ids: frozenset[int] = frozenset()
    usernames: frozenset[str] = frozenset()  # lower case, without @
    chats: frozenset[int] = frozenset()  # groups and channels
    work_groups: frozenset[int] = frozenset()
    mention_names: tuple[str, ...] = ()  # lower case
    attachment_max_bytes: int = Telegram().attachment_max_bytes

    @classmethod
    def from_config(cls, config: Config) -> Rules:
        tg = config.telegram
        ids = {u for u in tg.allow_users if isinstance(u, int)}
        names = {u.lstrip("@").lower() for u in tg.allow_users if isinstance(u, str)}
        work = {int(k) for k, chat in config.chats.items() if chat.work_group}
        return cls(frozenset(ids), frozenset(names), frozenset(tg.allow_chats) | work, frozenset(work),
                   tuple(n.lower() for n in tg.mention_names), tg.attachment_max_bytes)

    def user_allowed(self, user_id: int | None, username: str | None) -> bool:
        return (user_id is not None and user_id in self.user_ids) or (
            bool(username) and username.lower() in self.usernames)

    def chat_allowed(self, chat_id: int, entity: Any) -> bool:
        """For backfill: a dialog worth reading (an allowed group, or a private chat with an allowed user)."""
        if isinstance(entity, types.User):
            return self.user_allowed(entity.id, entity.username)
        return chat_id in self.chats


def chat_kind(message) -> str:
    if message.is_private:
        return "private"
    return "group" if message.is_group or isinstance(message.peer_id, types.PeerChat) else "channel"


def media_name(message) -> str:
    name = MEDIA_NAMES.get(type(message.media), "media")
    if isinstance(message.media, types.MessageMediaDocument) and message.file is not None:
        mime = message.file.mime_type or ""
        name = "voice message" if message.voice else "video" if mime.startswith("video/") else \
            "audio" if mime.startswith("audio/") else "sticker" if message.sticker else "file"
    return name


def attachments_of(message, max_bytes: int) -> list[Attachment]:
    """The photo or document to save (Telegram sends one per message); none for other media.

    Voice messages, videos and audio are documents and saved too; a sticker is a
    reaction, not a file to work on, and stays a placeholder.
    """
    media, file = message.media, message.file
    if file is None or not isinstance(media, (types.MessageMediaPhoto, types.MessageMediaDocument)):
        return []  # no media, other media, or a photo or document that is gone (self-destructed)
    kind = media_name(message)
    if kind == "sticker":
        return []
    fallback = "photo.jpg" if kind == "photo" else kind.split()[0] + (file.ext or "")  # photos have no name
    name = inbox.safe_name(file.name, fallback)
    return [inbox.planned(message.chat_id, message.id, name, file.size, file.mime_type or "", max_bytes)]


def text_of(message, attached: bool = False) -> str:
    """The text (a caption is the message text), after a placeholder for media not attached."""
    text = message.message or ""
    media = message.media
    if attached or media is None or isinstance(media, types.MessageMediaWebPage):
        return text
    return f"[{media_name(message)}] {text}".strip()


def mentions(message, me, rules: Rules) -> bool:
    """Telegram flags mentions of us and replies to our messages; names are a fallback."""
    if message.mentioned:
        return True
    text = (message.message or "").lower()
    if me is not None and me.username and f"@{me.username.lower()}" in text:
        return True
    return any(name in text for name in rules.mention_names)


def accept(message, me, rules: Rules, caught_up: bool = False) -> MessageReceived | str:
    """The ``message.received`` to publish, or why the message is not for Valor."""
    if isinstance(message, types.MessageService) or getattr(message, "action", None) is not None:
        return "service message"
    if message.out or (me is not None and message.sender_id == me.id):
        return "own message"
    sender = message.sender
    username = getattr(sender, "username", None)
    if not rules.user_allowed(message.sender_id, username):
        return f"sender {message.sender_id} not allowed"
    kind = chat_kind(message)
    chat_id = message.chat_id
    if kind != "private" and chat_id not in rules.chats:
        return f"chat {chat_id} not allowed"
    mentioned = kind == "private" or mentions(message, me, rules)
    if kind != "private" and chat_id not in rules.work_groups and not mentioned:
        return "not mentioned"
    attachments = attachments_of(message, rules.attachment_max_bytes)
    text = text_of(message, attached=bool(attachments))
    if not text and not attachments:
        return "empty message"
    return fit(MessageReceived(
        chat_id=chat_id,
        message_id=message.id,
        sender_id=message.sender_id or 0,
        sender_name=utils.get_display_name(sender) if sender is not None else (username or ""),
        text=text,
        reply_to=message.reply_to_msg_id,
        sent_at=message.date.timestamp() if message.date else 0.0,
        chat_kind=kind,
        mentioned=mentioned,
        caught_up=caught_up,
        attachments=attachments,
    ))


def fit(msg: MessageReceived, limit: int = MAX_EVENT_BYTES) -> MessageReceived:
    """Cut a text too big for one NATS message once JSON-encoded, and say so in the text.

    Unbounded, ingest would retry a publish NATS refuses forever and stall.
    """
    size = len(encode(msg))
    if size <= limit:
        return msg
    text = msg.text
    while True:
        text = text[:int(len(text) * limit / size * 0.9)]
        cut = msgspec.structs.replace(msg, text=f"{text}\n[cut: the message had {len(msg.text)} characters]")
        size = len(encode(cut))
        if size <= limit or not text:
            return cut


def skipped(messages: list[MessageReceived], horizon: float) -> MessagesSkipped | None:
    """What catch-up found for Valor but older than the horizon, summed up for the chat (decision 54).

    None when nothing was skipped: no summary for a chat that lost nothing.
    """
    if not messages:
        return None
    ordered = sorted(messages, key=lambda m: m.message_id)
    texts = [m.text if len(m.text) <= SKIPPED_TEXT_CHARS else m.text[:SKIPPED_TEXT_CHARS - 1] + "…"
             for m in ordered[:SKIPPED_TEXTS]]
    kept, size = [], 0
    for m in ordered[:SKIPPED_KEPT]:
        size += len(encode(m))  # as stored: emoji and control characters weigh more than a character
        if size > SKIPPED_KEPT_BYTES:
            break
        kept.append(m)
    return MessagesSkipped(chat_id=ordered[0].chat_id, count=len(ordered), first_id=ordered[0].message_id,
                           last_id=ordered[-1].message_id, oldest=min(m.sent_at for m in ordered),
                           newest=max(m.sent_at for m in ordered), horizon=horizon, texts=texts, messages=kept)
