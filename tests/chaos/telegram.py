"""A fake Telegram that outlives the processes talking to it.

The chaos harness owns the world (``TelegramServer``: users, chats, history,
what Valor sent); ingest and notifier run as real processes that reach it
over HTTP through ``RemoteInbound`` and ``RemoteTransport``, so kill -9 of
either loses exactly what a real crash loses: live updates while it is down
arrive only through history, a notice sent but not recorded is found again by
``recent_own``.  Messages handed to ingest are real Telethon ``Message``
objects, built the way ``tests/chat/fake_telegram.py`` builds them.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from telethon import types

from services.notifier.transport import Sent

VALOR_ID = 777
POLL_EVERY = 0.1  # seconds between live-update polls of a RemoteInbound


@dataclass
class World:
    """Every chat is private: chat id == the user's id.  Ids are one counter, as for a user account."""

    users: list[int]
    history: dict[int, list[dict]] = field(default_factory=dict)  # chat -> messages, both directions
    updates: list[dict] = field(default_factory=list)  # inbound messages, edits, deletions, in order (the live feed)
    next_id: int = 100
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _new(self, chat_id: int, sender_id: int, text: str, reply_to: int | None) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "chat_id": chat_id, "sender_id": sender_id, "text": text,
                   "reply_to": reply_to, "date": time.time(), "out": sender_id == VALOR_ID}
        self.history.setdefault(chat_id, []).append(message)
        return message

    def say(self, chat_id: int, text: str) -> int:
        """The user of a private chat writes to Valor; returns the message id."""
        with self.lock:
            message = self._new(chat_id, chat_id, text, None)
            self.updates.append(dict(message))  # the update keeps the text as sent; history shows edits
            return message["id"]

    def edit(self, chat_id: int, message_id: int, text: str) -> bool:
        """The user edits a message (history reads the new text); False when it is gone."""
        with self.lock:
            m = next((m for m in self.history.get(chat_id, []) if m["id"] == message_id), None)
            if m is None:
                return False
            m.update(text=text, edit_date=time.time())
            self.updates.append(dict(m, kind="edit"))
            return True

    def delete(self, chat_id: int, message_id: int) -> None:
        """The user deletes a message: gone from history; the update names no chat, as for a user account."""
        with self.lock:
            self.history[chat_id] = [m for m in self.history.get(chat_id, []) if m["id"] != message_id]
            self.updates.append({"kind": "deleted", "chat_id": chat_id, "ids": [message_id]})

    def inbound_ids(self) -> dict[int, list[int]]:
        with self.lock:
            return {c: [m["id"] for m in msgs if not m["out"]] for c, msgs in self.history.items()}

    def sent(self) -> list[dict]:
        with self.lock:
            return [m for msgs in self.history.values() for m in msgs if m["out"]]

    # --- what the remote ports ask for ------------------------------------------

    def call(self, op: str, a: dict):
        with self.lock:
            if op == "updates_top":
                return len(self.updates)
            if op == "updates":
                return self.updates[a["after"]:]
            if op == "dialogs":
                return [c for c in self.users if self.history.get(c)]
            if op == "history":
                found = [m for m in self.history.get(a["chat_id"], []) if m["id"] > a["min_id"]]
                return found[:a["limit"]]
            if op == "send":
                return self._new(a["chat_id"], VALOR_ID, a["text"], a["reply_to"])["id"]
            if op in ("edit", "react"):
                return None
            if op == "recent_own":
                own = [m for m in self.history.get(a["chat_id"], []) if m["out"]][-a["limit"]:]
                return [[m["id"], m["text"].strip(), m["reply_to"]] for m in reversed(own)]
        raise ValueError(f"unknown call {op}")


class TelegramServer:
    def __init__(self, world: World) -> None:
        self.world = world
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                try:
                    out, status = json.dumps(outer.world.call(self.path.strip("/"), body)).encode(), 200
                except Exception as exc:
                    out, status = str(exc).encode(), 400
                self.send_response(status)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> TelegramServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --- the process side ---------------------------------------------------------------


class Remote:
    def __init__(self, url: str) -> None:
        self.url = url

    def _post(self, op: str, args: dict):
        req = urllib.request.Request(f"{self.url}/{op}", data=json.dumps(args).encode(), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return json.loads(resp.read())
        except OSError as exc:  # the ports' callers wait out ConnectionErrors
            raise ConnectionError(str(exc)) from None

    async def call(self, op: str, **args):
        return await asyncio.to_thread(self._post, op, args)


def me() -> types.User:
    return types.User(id=VALOR_ID, username="valor", first_name="Valor")


def telethon_message(m: dict, users: dict[int, types.User]) -> types.Message:
    message = types.Message(
        id=m["id"], peer_id=types.PeerUser(m["chat_id"]), from_id=types.PeerUser(m["sender_id"]),
        date=datetime.fromtimestamp(m["date"], UTC), message=m["text"], out=m["out"],
        edit_date=datetime.fromtimestamp(m["edit_date"], UTC) if m.get("edit_date") else None,
        reply_to=types.MessageReplyHeader(reply_to_msg_id=m["reply_to"]) if m["reply_to"] else None)

    class Shim:  # what Message._finish_init reads from a client
        _self_id = VALOR_ID
        _mb_entity_cache = type("Cache", (), {"get": lambda self, _id: None})()

    entities = dict(users)
    entities[VALOR_ID] = me()
    message._finish_init(Shim(), entities, None)
    return message


class RemoteInbound(Remote):
    """``services.ingest.telegram.Inbound`` onto the harness's world; live updates are polled."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.users: dict[int, types.User] = {}
        self._poll: asyncio.Task | None = None

    def _user(self, user_id: int) -> types.User:
        if user_id not in self.users:
            self.users[user_id] = types.User(id=user_id, username=f"user{user_id}", first_name=f"user{user_id}")
        return self.users[user_id]

    async def connect(self) -> None:
        await self.call("updates_top")

    async def me(self):
        return me()

    async def dialogs(self, limit: int):
        return [(c, self._user(c)) for c in (await self.call("dialogs"))[:limit]]

    async def history(self, chat_id: int, min_id: int, since, limit: int):
        for m in await self.call("history", chat_id=chat_id, min_id=min_id, limit=limit):
            self._user(m["chat_id"])
            yield telethon_message(m, self.users)

    async def listen(self, on_message, on_edit=None, on_deleted=None, on_gap=None) -> None:
        top = await self.call("updates_top")  # what happened before we listened is history's job

        async def deliver(m: dict) -> None:
            kind = m.get("kind")
            if kind == "deleted":
                if on_deleted is not None:
                    await on_deleted(None, m["ids"])
                return
            self._user(m["chat_id"])
            if kind == "edit":
                if on_edit is not None:
                    await on_edit(telethon_message(m, self.users))
                return
            await on_message(telethon_message(m, self.users))

        async def poll(after: int) -> None:
            while True:
                try:
                    fresh = await self.call("updates", after=after)
                except ConnectionError:
                    fresh = []
                for m in fresh:
                    await deliver(m)
                    after += 1
                await asyncio.sleep(POLL_EVERY)

        self._poll = asyncio.create_task(poll(top), name="fake-telegram-updates")

    async def send(self, chat_id: int, text: str, reply_to: int | None) -> int:
        return await self.call("send", chat_id=chat_id, text=text, reply_to=reply_to)

    async def stop(self) -> None:
        if self._poll is not None:
            self._poll.cancel()


class RemoteTransport(Remote):
    """``services.notifier.transport.Transport`` onto the harness's world."""

    can_read_history = True

    async def connect(self) -> None:
        await self.call("updates_top")

    async def send(self, chat_id: int, text: str, reply_to: int | None) -> int:
        return await self.call("send", chat_id=chat_id, text=text, reply_to=reply_to)

    async def send_document(self, chat_id: int, caption: str, name: str, data: bytes, reply_to: int | None) -> int:
        # The world keeps texts: a document is its caption there, which is all that reconcile reads.
        return await self.call("send", chat_id=chat_id, text=caption, reply_to=reply_to)

    async def edit(self, chat_id: int, message_id: int, text: str) -> None:
        await self.call("edit", chat_id=chat_id, message_id=message_id, text=text)

    async def react(self, chat_id: int, message_id: int, emoji: str) -> None:
        await self.call("react", chat_id=chat_id, message_id=message_id, emoji=emoji)

    async def recent_own(self, chat_id: int, limit: int) -> list[Sent]:
        return [Sent(*row) for row in await self.call("recent_own", chat_id=chat_id, limit=limit)]

    async def stop(self) -> None:
        pass
