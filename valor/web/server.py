"""A GET-only HTTP server for the dashboard: the page, JSON endpoints, Server-Sent Events.

Routes:
  /                      the page (index.html, everything inline, nothing from elsewhere)
  /api/promises          newest first; ?state=&type=&chat= filter, ?limit= (default 500)
  /api/promises/<id>     one promise: show --json object, timeline, dependency graph laid out
  /api/status            what `valor status --json` prints (promise counts from the live fold)
  /api/spend             spend per day (the last 14, UTC) and the costliest promises; ?chat= one chat's
  /api/events?since=SEQ  SSE: `promises` events with the rows that changed after SEQ

Answers come from the schedulers' served read model (decision 48), a promise's
timeline from its own subject, and the live updates from a consumer that starts
at the stream's end.  With no scheduler answering when the page starts, it folds
the log itself as before (``LiveLog(fold=True)``) and answers the same queries
from that fold.

Read-only by construction: any method but GET/HEAD is answered 405 and nothing
here publishes to NATS.  One request per connection (Connection: close) keeps
the server a screenful; the page makes few requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from nats.aio.client import Client

from schemas import subjects
from services.scheduler import readmodel
from services.scheduler.readmodel import Answer, PromiseQuery, PromisesQuery, StatusQuery
from valor.client import ValorClient, state_of
from valor.web import views
from valor.web.live import LiveLog, follow

log = logging.getLogger("valor.web")

PAGE = resources.files("valor.web").joinpath("index.html")
STATUS_TTL = 1.0  # seconds a status answer is reused: many tabs, one set of NATS requests
PING_EVERY = 15.0  # an SSE comment keeps proxies open and finds closed tabs
BATCH = 0.1  # SSE waits this long after a change to send one message for a burst
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                               "style-src 'self' 'unsafe-inline'; img-src 'self' data:",
    "Referrer-Policy": "no-referrer",
}
REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
           500: "Internal Server Error"}
LOCAL_NAMES = {"127.0.0.1", "localhost", "::1", "[::1]"}
ANY_ADDRESS = {"0.0.0.0", "::", ""}


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Dashboard:
    def __init__(self, nc: Client, live: LiveLog) -> None:
        self.client = ValorClient(nc, by="web")
        self.live = live
        self._status: tuple[float, dict[str, Any]] | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._hosts: set[str] | None = None

    # --- lifecycle --------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 8765) -> Dashboard:
        self._server = await asyncio.start_server(self._connection, host, port)
        # A page elsewhere could rebind its own name to 127.0.0.1 and read the chats' promises:
        # only requests naming this server (or localhost) are answered, unless bound to every address.
        self._hosts = None if host in ANY_ADDRESS else LOCAL_NAMES | {host}
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):  # SSE streams never end by themselves
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # --- HTTP -------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            await self._request(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        except asyncio.CancelledError:
            pass  # stop(): the connection ends here (re-raising makes asyncio log it on 3.11)
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode("latin-1")
        request_line, *header_lines = head.split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3:
            return await self._send(writer, 400, {"error": "bad request line"})
        method, target, _ = parts
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
        url = urlsplit(target)
        query = dict(parse_qsl(url.query))
        if self._hosts is not None and _hostname(headers.get("host", "")) not in self._hosts:
            return await self._send(writer, 403, {"error": "unexpected Host header; open the dashboard by its address"})
        if method not in ("GET", "HEAD"):
            return await self._send(writer, 405, {"error": "read-only: only GET"}, {"Allow": "GET, HEAD"})
        try:
            if url.path == "/api/events":
                return await self._events(writer, query, headers)
            status, body, ctype = await self._route(url.path, query)
        except HttpError as exc:
            status, body, ctype = exc.status, {"error": str(exc)}, None
        except Exception:
            log.exception("web: %s failed", url.path)
            status, body, ctype = 500, {"error": "internal error (see the server log)"}, None
        await self._send(writer, status, body, content_type=ctype, head_only=method == "HEAD")

    async def _route(self, path: str, query: dict[str, str]) -> tuple[int, Any, str | None]:
        if path in ("/", "/index.html"):
            return 200, PAGE.read_bytes(), "text/html; charset=utf-8"
        if path == "/api/promises":
            return 200, await self._list(query, max(1, _int(query.get("limit", "500"), "limit"))), None
        if path.startswith("/api/promises/"):
            pid = _int(path.rsplit("/", 1)[1], "promise id")
            found = await self._detail(pid)
            if found is None:
                raise HttpError(404, f"no promise #{pid}")
            return 200, found, None
        if path == "/api/status":
            return 200, await self.status(), None
        if path == "/api/spend":
            chat = query.get("chat") or ""
            answer = await self.read(PromisesQuery(chat_id=int(chat) if chat.lstrip("-").isdigit() else None))
            return 200, views.spend_view(state_of(answer), query, time.time()), None
        raise HttpError(404, f"nothing at {path}")

    # --- reads: served by a scheduler, or answered from this page's own fold ---------------

    async def read(self, query: Any) -> Answer:
        if self.live.fold:
            return readmodel.answer(self.live.index, query)
        return await self.client.read(query)  # no scheduler answering any more: the client folds

    async def _list(self, query: dict[str, str], limit: int) -> dict[str, Any]:
        chat = query.get("chat") or ""
        if chat and not chat.lstrip("-").isdigit():
            chat = "0"  # a chat id is a number: nothing matches, as before
        answer = await self.read(PromisesQuery(state=query.get("state") or None, type=query.get("type") or None,
                                               chat_id=int(chat) if chat else None, limit=limit))
        about = await self.read(StatusQuery())
        return views.promise_list(state_of(answer), query, limit, answer.seq,
                                  {"total": sum(about.counts.values()), "counts": about.counts,
                                   "types": about.types, "chats": about.chats})

    async def _detail(self, pid: int) -> dict[str, Any] | None:
        state = state_of(await self.read(PromiseQuery(id=pid)))
        if pid not in state.promises:
            return None
        # The service names the nearest relatives; the graph reaches further: ask for the rest a ring at a time.
        while len(state.promises) < views.GRAPH_LIMIT:
            missing = [i for i in views.component(state, pid) if i not in state.promises]
            more = await self.read(PromisesQuery(ids=missing)) if missing else None
            if more is None or not more.promises:
                break  # none left, or only unknown ids (drawn as unknown)
            state.promises.update({p.id: p for p in more.promises})
            state.dependents.update(more.dependents)
        if self.live.fold:
            events = self.live.events.get(pid, [])
        else:
            events = [e for _, e in await self.client.events(subjects.promise_all(pid))]
        return views.detail(state, pid, events)

    async def _changes(self, ids: list[int], seq: int) -> dict[str, Any]:
        answer, about = await self.read(PromisesQuery(ids=ids)), await self.read(StatusQuery())
        state = state_of(answer)
        return {"seq": seq, "counts": about.counts, "total": sum(about.counts.values()),
                "promises": [views.row(state.promises[i], state) for i in ids if i in state.promises]}

    async def status(self) -> dict[str, Any]:
        now = time.monotonic()
        if self._status is None or now - self._status[0] > STATUS_TTL:
            info = await self.live.status(self.client)
            info["log_seq"] = self.live.seq
            self._status = (now, info)
        return self._status[1]

    async def _send(self, writer, status: int, body: Any, extra: dict[str, str] | None = None, *,
                    content_type: str | None = None, head_only: bool = False) -> None:
        if not isinstance(body, bytes):
            body = json.dumps(body, ensure_ascii=False, default=str).encode()
            content_type = "application/json; charset=utf-8"
        headers = {"Content-Type": content_type or "application/json", "Content-Length": str(len(body)),
                   "Cache-Control": "no-store", "Connection": "close", **SECURITY_HEADERS, **(extra or {})}
        writer.write(_head(status, headers) + (b"" if head_only else body))
        await writer.drain()

    async def _events(self, writer, query: dict[str, str], headers: dict[str, str]) -> None:
        """Server-Sent Events: one ``promises`` message per burst of changes, ids = stream seqs."""
        # A reconnecting EventSource repeats the URL but sends the last id it saw: that wins.
        since = _int(headers.get("last-event-id") or query.get("since") or str(self.live.seq), "since")
        writer.write(_head(200, {"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                 "Connection": "close", **SECURITY_HEADERS}) + b"retry: 1000\n\n")
        await writer.drain()
        while True:
            ids = self.live.changed_since(since)
            if ids:
                seq = self.live.seq
                data = json.dumps(await self._changes(ids, seq), ensure_ascii=False, default=str)
                writer.write(f"id: {seq}\nevent: promises\ndata: {data}\n\n".encode())
                await writer.drain()
                since = seq
            if await self.live.changed(PING_EVERY):
                await asyncio.sleep(BATCH)
            else:
                writer.write(b": ping\n\n")
                await writer.drain()


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise HttpError(400, f"{what} must be an integer, not {text!r}") from None


def _hostname(header: str) -> str:
    """``Host`` without its port: ``127.0.0.1:8765`` -> ``127.0.0.1``, ``[::1]:80`` -> ``[::1]``."""
    if header.startswith("["):
        return header.partition("]")[0] + "]"
    return header.rpartition(":")[0] if header.count(":") == 1 else header


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, '')}"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def serve(nc: Client, host: str = "127.0.0.1", port: int = 8765,
                started: asyncio.Future | None = None) -> None:
    """Run the dashboard until cancelled; ``started`` gets the bound port."""
    live = await follow(nc)
    dashboard = await Dashboard(nc, live).start(host, port)
    if started is not None:
        started.set_result(dashboard.port)
    try:
        await asyncio.Event().wait()
    finally:
        await dashboard.stop()
        await live.stop()
