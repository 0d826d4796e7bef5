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
from .service import Ingest, last_stored_id

SUBJECT = "console.*.in"


def console_in(chat_id: int) -> str:
    return f"console.{chat_id}.in"


class ConsoleIngest:
    def __init__(self, nc: Client, ingest: Ingest, clock: Callable[[], float] = time.time) -> None:
        self.nc = nc
        self.ingest = ingest  # for publish(): the same message ids, retries and logs
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
                self.last_id[chat_id] = await last_stored_id(self.ingest.js, chat_id) or 0
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
            await self.ingest.publish(incoming)
            self.last_id[chat_id] = message_id
        answer: dict = {"id": message_id}
        if incoming.attachments:
            answer["attachments"] = msgspec.to_builtins(incoming.attachments)
        await self._answer(msg, answer)

    async def _answer(self, msg: Msg, body: dict) -> None:
        if msg.reply:
            await self.nc.publish(msg.reply, json.dumps(body).encode())
