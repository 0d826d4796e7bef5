"""The local console in place of Telegram: typed lines in, as an allowlisted user's private chat.

``valor.console`` sends each line as a request on ``console.<chat>.in``
(``{"text": ...}``).  Ingest gives it the next message id after the last one
stored on ``chat.<chat>.in``, publishes ``message.received`` like any other
message, and answers ``{"id": n}`` once it is stored.  The console user is
the chat itself (``sender_id == chat_id``), as in a Telegram private chat.

``{"text": caption, "file": "/abs/path"}`` attaches a local file (the
console's ``/attach PATH [caption]``): ingest copies it into the chat's
workspace like a downloaded document (``inbox.py``, same cap), and the answer
lists the attachment as recorded.  A path that is no readable regular file is
refused with an error and stores nothing.

While the cluster has no quorum the line cannot be stored: ingest holds it and
answers ``{"held": reason}`` at each refused try (so the console keeps waiting
instead of timing out), then ``{"id": n}`` once stored; the chat is told once
per outage on ``console.<chat>.out`` (``{"op": "notice"}``, decision 77).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from schemas.events import MessageReceived

from . import inbox, logs
from .service import Ingest, OnHeld, last_stored_id

SUBJECT = "console.*.in"


def console_in(chat_id: int) -> str:
    return f"console.{chat_id}.in"


def console_out(chat_id: int) -> str:
    return f"console.{chat_id}.out"


class ConsoleNotices:
    """Ingest's own word to the console (its messages are held): core NATS, which a node alone still carries."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc

    async def send(self, chat_id: int, text: str, reply_to: int | None) -> None:
        record = {"op": "notice", "reply_to": reply_to, "text": text}
        await self.nc.publish(console_out(chat_id), json.dumps(record, ensure_ascii=False).encode())


class ConsoleIngest:
    def __init__(self, nc: Client, ingest: Ingest, clock: Callable[[], float] = time.time) -> None:
        self.nc = nc
        self.ingest = ingest  # for publish(): the same message ids, retries and logs
        ingest.notices = ConsoleNotices(nc)
        self.clock = clock
        self.last_id: dict[int, int] = {}
        self._lock = asyncio.Lock()
        self._sub = None

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(SUBJECT, cb=self._on_line)
        logs.info("ingest.started", console=True)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()

    async def _on_line(self, msg: Msg) -> None:
        try:
            chat_id = int(msg.subject.split(".")[1])
            body = json.loads(msg.data or b"{}")
            text = str(body.get("text", "")).strip()
            file = body.get("file")
            if file is not None and not isinstance(file, str):
                raise ValueError(file)
        except (ValueError, AttributeError):
            return await self._answer(msg, {"error": "expected {\"text\": ...} on console.<chat id>.in"})
        if not text and not file:
            return await self._answer(msg, {"error": "empty message"})
        max_bytes = self.ingest.tg.attachment_max_bytes
        async with self._lock:
            if chat_id not in self.last_id:
                self.last_id[chat_id] = await self._last_stored(chat_id, lambda reason: self._answer(
                    msg, {"held": reason}))
            message_id = self.last_id[chat_id] + 1
            incoming = MessageReceived(
                chat_id=chat_id, message_id=message_id, sender_id=chat_id,
                sender_name=str(body.get("sender") or "you"), text=text,
                reply_to=body.get("reply_to") if isinstance(body.get("reply_to"), int) else None,
                sent_at=self.clock(), chat_kind="console", mentioned=True)
            if file:
                try:
                    attachment, copy = inbox.local_file(chat_id, message_id, file, max_bytes)
                except OSError as exc:
                    return await self._answer(msg, {"error": f"cannot attach {file}: {exc.strerror or exc}"})
                incoming = await inbox.save_all(
                    msgspec.structs.replace(incoming, attachments=[attachment]),
                    self.ingest.config.workspace_for(chat_id), copy, max_bytes)
            await self.ingest.publish(incoming, on_held=lambda reason: self._answer(msg, {"held": reason}))
            self.last_id[chat_id] = message_id
        answer: dict = {"id": message_id}
        if incoming.attachments:
            answer["attachments"] = msgspec.to_builtins(incoming.attachments)
        await self._answer(msg, answer)

    async def _last_stored(self, chat_id: int, on_held: OnHeld) -> int:
        """The chat's last message id on CHAT (0: none), asked until the stream answers: a line's id
        continues from it, so a line cannot be taken before (held, like a store, when there is no quorum)."""
        delay = 0.2
        while True:
            try:
                return await last_stored_id(self.ingest.js, chat_id) or 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logs.warning("ingest.last_id_retry", chat_id=chat_id, error=str(exc) or type(exc).__name__)
                await self.ingest.refused(chat_id, None, on_held, str(exc) or type(exc).__name__)
                await self.ingest.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _answer(self, msg: Msg, body: dict) -> None:
        if msg.reply:
            await self.nc.publish(msg.reply, json.dumps(body).encode())
