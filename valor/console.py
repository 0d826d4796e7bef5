"""``python -m valor.console`` (``make chat``): talk to Valor from a terminal, as over Telegram.

Each line you type goes to ingest (``console.<chat>.in``), which stores it as
a message of an allowlisted user; the notifier's replies, edits and reactions
arrive live on ``console.<chat>.out``.  Works without a terminal too: lines
are read from stdin, and after the last one it waits until Valor has been
quiet for ``--idle`` seconds (at most ``--wait``).

``/attach PATH [caption]`` sends a local file as a document with that caption:
ingest copies it into the chat's workspace as it would save a Telegram file.
``>v3 text`` sends ``text`` as a reply to Valor's message ``v3`` (the names the
screen gives Valor's messages), as replying to it on Telegram: ``>v3 stop``
cancels the task that message is about.

While a line cannot be stored (the cluster electing a leader, or with no
quorum) ingest says so at each try and the console waits for the line to be
stored instead of calling ingest unreachable; with no quorum ingest also tells
the chat once (decision 77).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shlex
import sys
import time

import nats.errors

from valor import bus
from valor.config import load

HELP = ("Type a message and press enter (try /help). End a line with \\ to continue the message "
        "on the next line (for /plan). /attach PATH [caption] sends a file. >v3 text replies to Valor's "
        "message v3 (>v3 stop, >v3 why?). Ctrl-D quits.")
ATTACH = "/attach"
REPLY = re.compile(r"\A>\s*v(\d+)\b\s*(.*)\Z", re.DOTALL)
# Seconds for ingest's first answer to a line: it answers at once once stored, and after its
# first failed try (up to 5 s) when not; an ingest that is not running is "no responders" at once.
ANSWER_TIMEOUT = 15.0
# While a line is held (no quorum), ingest says so at each try, a few seconds apart: this long
# without a word means ingest itself is gone.
HELD_SILENCE = 60.0


class Screen:
    """Renders the records the notifier's console transport publishes."""

    def __init__(self, out=sys.stdout) -> None:
        self.out = out
        self.names: dict[int, str] = {}  # Valor's message ids -> v1, v2, ...
        self.texts: dict[int, str] = {}  # what each of Valor's messages shows now
        self.last_output = time.monotonic()

    def name(self, message_id: int) -> str:
        return self.names.setdefault(message_id, f"v{len(self.names) + 1}")

    def message_named(self, name: str) -> int | None:
        return next((mid for mid, n in self.names.items() if n == name), None)

    def show(self, record: dict) -> None:
        self.last_output = time.monotonic()
        op = record.get("op")
        if op == "sent":
            to = f" ↩ #{record['reply_to']}" if record.get("reply_to") else ""
            self.texts[record["id"]] = record.get("text", "")
            self.print(f"valor [{self.name(record['id'])}]{to}: {record.get('text', '')}")
            if record.get("document"):
                self.print(f"valor [{self.name(record['id'])}] 📎 {record['document']}")
        elif op == "edited" and (changed := self.changed(record["id"], record.get("text", ""))):
            self.print(f"valor [{self.name(record['id'])}] ✎ {changed}")
        elif op == "reacted":
            self.print(f"valor reacted {record.get('emoji')} to #{record.get('id')}")
        elif op == "notice":  # ingest's own word (the line is held), not a message one can reply to
            to = f" ↩ #{record['reply_to']}" if record.get("reply_to") else ""
            self.print(f"valor{to}: {record.get('text', '')}")

    def changed(self, message_id: int, text: str) -> str:
        """The lines an edit changed (a plan's checklist is edited a line at a time), else the whole text."""
        if self.texts.get(message_id) == text:
            return ""
        before = set(self.texts.get(message_id, "").splitlines())
        self.texts[message_id] = text
        lines = [line for line in text.splitlines() if line not in before]
        return "\n".join(lines) if lines else text

    def print(self, text: str) -> None:
        print(text, file=self.out, flush=True)


def request_for(text: str, screen: Screen | None = None) -> dict:
    """The request for a typed message: ``/attach PATH [caption]`` names a file, made absolute here
    because ingest runs elsewhere; a path with spaces is quoted as in a shell.  ``>v3 text`` replies
    to Valor's message v3."""
    if reply := REPLY.match(text):
        name = f"v{reply[1]}"
        message_id = screen.message_named(name) if screen is not None else None
        if message_id is None:
            raise ValueError(f"there is no message {name} to reply to yet")
        return {**request_for(reply[2].strip(), screen), "reply_to": message_id}
    word, *tail = text.split(None, 1) or [""]
    if word != ATTACH:
        return {"text": text}
    rest = tail[0] if tail else ""
    lexer = shlex.shlex(rest, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""  # a '#' is part of a file name
    try:
        path = lexer.get_token()
    except ValueError:  # an unclosed quote
        path = None
    if not path:
        raise ValueError(f"usage: {ATTACH} PATH [caption]")
    caption = lexer.instream.read().strip()
    return {"text": caption, "file": os.path.abspath(os.path.expanduser(path))}


def attachment_line(att: dict) -> str:
    if att.get("path"):
        return f"  📎 {att['path']}"
    return f"  📎 {att.get('name', '')} not saved: {att.get('skipped', '')}"


async def send_line(nc, chat_id: int, text: str, screen: Screen) -> None:
    try:
        request = request_for(text, screen)
    except ValueError as exc:
        screen.print(f"(not sent: {exc})")
        return
    answer = await stored(nc, f"console.{chat_id}.in", json.dumps(request).encode(), screen)
    if answer is None:
        return
    if "error" in answer:
        screen.print(f"(not sent: {answer['error']})")
        return
    to = f" ↩ {screen.name(request['reply_to'])}" if request.get("reply_to") else ""
    screen.print(f"you [#{answer['id']}]{to}: {request['text']}".rstrip())
    for att in answer.get("attachments") or []:
        screen.print(attachment_line(att))


async def stored(nc, subject: str, data: bytes, screen: Screen, timeout: float = ANSWER_TIMEOUT,
                 held_silence: float = HELD_SILENCE) -> dict | None:
    """Ingest's final answer to a line (its id, or an error); None when ingest is not answering.

    Its own inbox rather than a request: a held line is answered ``{"held": reason}`` at each
    try before the answer that counts.
    """
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    held = False
    try:
        await nc.publish(subject, data, reply=inbox)
        while True:
            try:
                msg = await sub.next_msg(timeout=held_silence if held else timeout)
            except nats.errors.TimeoutError:
                msg = None
            if msg is None or (msg.headers or {}).get("Status") == "503":  # 503: no responders
                screen.print("(ingest stopped answering while it held this line; see `valor status`)" if held
                             else "(ingest is not answering: is Valor up? try `make up`)")
                return None
            answer = json.loads(msg.data)
            if "held" not in answer:
                return answer
            if not held:
                screen.print(f"(held, not stored yet: {answer['held']}; still trying)")
                held = True
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


async def read_messages(interactive: bool):
    """Lines, where a line ending in a backslash continues the message on the next one."""
    pending: list[str] = []
    async for line in read_lines(interactive):
        if line.endswith("\\"):
            pending.append(line[:-1].rstrip())
            continue
        yield "\n".join([*pending, line]).strip()
        pending = []
    if pending:
        yield "\n".join(pending).strip()


async def read_lines(interactive: bool):
    loop = asyncio.get_running_loop()
    while True:
        if interactive:
            try:
                line = await loop.run_in_executor(None, input, "")
            except EOFError:
                return
        else:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
        yield line.rstrip("\n")


async def chat(chat_id: int, idle: float, wait: float, interactive: bool) -> None:
    async def quiet(*_) -> None:  # the terminal is for the chat, not for connection notices
        pass

    # A node that is down is not the chat's business (the lines say what it means for them), and
    # nats-py's error per node tried would be printed on the terminal.
    nc = await bus.connect(name="console", max_reconnect_attempts=5, disconnected_cb=quiet, error_cb=quiet)
    screen = Screen()

    async def show(msg) -> None:
        _show(screen, msg.data)

    sub = await nc.subscribe(f"console.{chat_id}.out", cb=show)
    try:
        if interactive:
            screen.print(f"Valor console, chat {chat_id}. {HELP}")
        async for line in read_messages(interactive):
            if line:
                await send_line(nc, chat_id, line, screen)
        deadline = time.monotonic() + wait
        screen.last_output = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - screen.last_output < idle:
            await asyncio.sleep(0.1)
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        await nc.close()


def _show(screen: Screen, data: bytes) -> None:
    try:
        screen.show(json.loads(data))
    except (ValueError, KeyError, TypeError):
        pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chat", type=int, default=None, help="console chat id (default: telegram.console_chat)")
    p.add_argument("--idle", type=float, default=5.0, help="after the last line: stop once quiet this long")
    p.add_argument("--wait", type=float, default=120.0, help="after the last line: stop after this long anyway")
    a = p.parse_args(argv)
    chat_id = a.chat if a.chat is not None else load().telegram.console_chat
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(chat(chat_id, a.idle, a.wait, sys.stdin.isatty()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
