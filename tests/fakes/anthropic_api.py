"""A scripted, local stand-in for the Anthropic Messages API.

Serves ``POST /v1/messages`` (JSON, or SSE when ``"stream": true``, event for
event as the real API streams) and ``POST /v1/messages/count_tokens`` on
127.0.0.1, in a background thread, with the standard library only.  Both the
Claude Code CLI (``ANTHROPIC_BASE_URL``) and the ``anthropic`` SDK
(``Anthropic(base_url=..., api_key=...)``) talk to it.

Usage::

    fake = FakeAnthropic()
    base_url = fake.start()
    fake.script(
        tool_use("Write", {"file_path": "/w/a.txt", "content": "hi"}),  # the first model call
        text("Wrote a.txt"),                                             # the next one (after the tool_result)
    )
    ...
    fake.requests[0].tool_names   # what the client sent, recorded
    fake.stop()

A scripted turn answers one request and is used up.  Each request takes the
first unused turn whose ``when`` matches it; by default a turn matches only
requests that offer ``tools`` (the main loop of an agent), so side requests a
client makes on its own (a title, a quota check) fall through to a short
default text reply without consuming the script.  ``when`` may be ``ANY``, a
string (the last user message contains it) or a predicate on the
``Recorded`` request.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_REPLY = "OK"
DEFAULT_MODEL = "claude-sonnet-4-5"


@dataclass
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: Any
    turn: Turn | None = None  # the scripted turn that answered it, None for a default reply

    @property
    def api_key(self) -> str | None:
        """The key the client sent, as ``x-api-key`` or as a bearer token (newer SDKs)."""
        if "x-api-key" in self.headers:
            return self.headers["x-api-key"]
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return token if scheme.lower() == "bearer" and token else None

    @property
    def model(self) -> str | None:
        return self.body.get("model") if isinstance(self.body, dict) else None

    @property
    def stream(self) -> bool:
        return isinstance(self.body, dict) and bool(self.body.get("stream"))

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages") or []) if isinstance(self.body, dict) else []

    @property
    def tools(self) -> list[dict[str, Any]]:
        return list(self.body.get("tools") or []) if isinstance(self.body, dict) else []

    @property
    def tool_names(self) -> list[str]:
        return [t.get("name", "") for t in self.tools]

    @property
    def system(self) -> str:
        """The system prompt as one string (the API accepts a string or text blocks)."""
        system = self.body.get("system") if isinstance(self.body, dict) else None
        return _text_of(system)

    @property
    def last_user_text(self) -> str:
        """Text of the last user message, tool results included."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return _text_of(message.get("content"))
        return ""

    @property
    def tool_results(self) -> list[dict[str, Any]]:
        """The tool_result blocks of the last message (what the client answered to a tool_use)."""
        if not self.messages:
            return []
        content = self.messages[-1].get("content")
        return [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"] \
            if isinstance(content, list) else []


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict):
                if block.get("type") == "text":
                    parts.append(block.get("text", ""))
                elif block.get("type") == "tool_result":
                    parts.append(_text_of(block.get("content")))
            elif isinstance(block, str):
                parts.append(block)
        return "\n".join(parts)
    return str(content)


def ANY(request: Recorded) -> bool:
    return True


def has_tools(request: Recorded) -> bool:
    return bool(request.tools)


Matcher = Callable[[Recorded], bool]


@dataclass
class Turn:
    """One scripted answer: content blocks, or an HTTP error; optionally after a delay or held until released."""

    content: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str = "end_turn"
    when: Matcher | str | None = None  # None: requests that offer tools
    delay: float = 0.0  # seconds before answering (the connection stays open)
    release: threading.Event | None = None  # answer only once the test sets it (the model is "thinking")
    status: int = 200
    error: dict[str, Any] | None = None  # {"type": ..., "message": ...} for a non-200 status

    def matches(self, request: Recorded) -> bool:
        when = self.when
        if when is None:
            return has_tools(request)
        if isinstance(when, str):
            return when in request.last_user_text
        return bool(when(request))


_ids = itertools.count(1)


def text(reply: str, **options: Any) -> Turn:
    """A turn that answers with text and ends the model's turn."""
    return Turn(content=[{"type": "text", "text": reply}], **options)


def tool_use(name: str, input: dict[str, Any], preface: str | None = None, **options: Any) -> Turn:
    """A turn that calls one tool (optionally after some text); the client answers with a tool_result."""
    block = {"type": "tool_use", "id": f"toolu_fake{next(_ids):06d}", "name": name, "input": input}
    content = ([{"type": "text", "text": preface}] if preface else []) + [block]
    return Turn(content=content, stop_reason="tool_use", **options)


def error(status: int, type: str, message: str, **options: Any) -> Turn:
    """A turn that fails the request, e.g. ``error(401, "authentication_error", "invalid x-api-key")``."""
    return Turn(status=status, error={"type": type, "message": message}, **options)


class FakeAnthropic:
    def __init__(self, default_reply: str = DEFAULT_REPLY):
        self.default_reply = default_reply
        self.requests: list[Recorded] = []
        self._turns: list[Turn] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> str:
        """Listen on a free port of 127.0.0.1; returns the base URL (no trailing slash, no /v1)."""
        fake = self

        class Handler(_Handler):
            owner = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-anthropic", daemon=True)
        self._thread.start()
        return self.base_url

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self._stopping.set()  # ends delays early
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeAnthropic:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- script ----------------------------------------------------------------------------------

    def script(self, *turns: Turn) -> FakeAnthropic:
        """Append turns; each answers one matching request, in order."""
        with self._lock:
            self._turns.extend(turns)
        return self

    @property
    def unused(self) -> list[Turn]:
        with self._lock:
            return list(self._turns)

    def calls(self, path: str = "/v1/messages") -> list[Recorded]:
        """Recorded requests to ``path``."""
        return [r for r in list(self.requests) if r.path == path]

    def _take(self, request: Recorded) -> Turn | None:
        with self._lock:
            self.requests.append(request)
            for i, turn in enumerate(self._turns):
                if turn.matches(request):
                    request.turn = self._turns.pop(i)
                    return request.turn
        return None

    def _wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if the fake was stopped meanwhile."""
        return self._stopping.wait(seconds)

    def _hold(self, release: threading.Event) -> bool:
        """Wait until ``release`` is set; True if the fake was stopped first."""
        while not release.wait(0.05):
            if self._stopping.is_set():
                return True
        return False


class _Handler(BaseHTTPRequestHandler):
    owner: FakeAnthropic
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return {"_raw": raw.decode(errors="replace")}

    def _record(self, body: Any) -> Recorded:
        return Recorded(self.command, self.path.split("?")[0], {k.lower(): v for k, v in self.headers.items()}, body)

    def do_GET(self) -> None:
        self._record_only(None)

    def do_POST(self) -> None:
        body = self._body()
        path = self.path.split("?")[0]
        if path == "/v1/messages":
            return self._messages(body)
        if path == "/v1/messages/count_tokens":
            self.owner.requests.append(self._record(body))
            return self._json(200, {"input_tokens": _estimate_tokens(body)})
        self._record_only(body)

    def _record_only(self, body: Any) -> None:
        # Other endpoints a client may probe: answer harmlessly so nothing retries.
        self.owner.requests.append(self._record(body))
        self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": f"{self.path} not faked"}})

    def _messages(self, body: Any) -> None:
        request = self._record(body)
        turn = self.owner._take(request)
        if turn is None:
            turn = text(self.owner.default_reply)
        if turn.delay and self.owner._wait(turn.delay):
            self.close_connection = True  # stopped while waiting: drop the request unanswered
            return
        if turn.release is not None and self.owner._hold(turn.release):
            self.close_connection = True
            return
        if turn.status != 200:
            return self._json(turn.status, {"type": "error", "error": turn.error or {"type": "api_error", "message": "error"}})
        message = _message(turn, request.model or DEFAULT_MODEL, _estimate_tokens(body))
        if request.stream:
            return self._sse(message)
        self._json(200, message)

    def _send(self, status: int, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("request-id", f"req_fake{next(_ids):06d}")
        self.end_headers()
        try:
            self.wfile.write(payload)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (cancelled); nothing to tell it

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, "application/json", json.dumps(payload).encode())

    def _sse(self, message: dict[str, Any]) -> None:
        self._send(200, "text/event-stream", "".join(_sse_events(message)).encode())


def _estimate_tokens(body: Any) -> int:
    return max(1, len(json.dumps(body)) // 4)


def _usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {"input_tokens": input_tokens, "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


def _message(turn: Turn, model: str, input_tokens: int) -> dict[str, Any]:
    output_tokens = max(1, len(json.dumps(turn.content)) // 4)
    return {
        "id": f"msg_fake{next(_ids):06d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": turn.content,
        "stop_reason": turn.stop_reason,
        "stop_sequence": None,
        "usage": _usage(input_tokens, output_tokens),
    }


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def _chunks(s: str, size: int = 24) -> list[str]:
    return [s[i:i + size] for i in range(0, len(s), size)] or [""]


def _sse_events(message: dict[str, Any]):
    """The Messages API stream for a complete message: start, blocks with deltas, delta, stop."""
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None,
             "usage": {**message["usage"], "output_tokens": 1}}
    yield _event("message_start", {"type": "message_start", "message": start})
    yield _event("ping", {"type": "ping"})
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            yield _event("content_block_start", {"type": "content_block_start", "index": index,
                                                 "content_block": {"type": "text", "text": ""}})
            for piece in _chunks(block["text"]):
                yield _event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                     "delta": {"type": "text_delta", "text": piece}})
        elif block["type"] == "tool_use":
            yield _event("content_block_start", {"type": "content_block_start", "index": index,
                                                 "content_block": {**block, "input": {}}})
            for piece in _chunks(json.dumps(block["input"])):
                yield _event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                     "delta": {"type": "input_json_delta", "partial_json": piece}})
        yield _event("content_block_stop", {"type": "content_block_stop", "index": index})
    yield _event("message_delta", {"type": "message_delta",
                                   "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                                   "usage": {"output_tokens": message["usage"]["output_tokens"]}})
    yield _event("message_stop", {"type": "message_stop"})


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, every: float = 0.05) -> bool:
    """Poll ``predicate`` until true or ``timeout``; for tests that wait on the fake from a thread."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()
