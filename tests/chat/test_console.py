"""The local console: a newcomer types, Valor answers, as in a Telegram private chat."""

import asyncio
import sys

from services.ingest.console import ConsoleIngest
from services.ingest.service import Ingest
from services.notifier.service import Notifier
from services.notifier.transport import ConsoleTransport

from .conftest import CONFIG, settle, stored_messages


async def test_console_lines_are_answered_with_replies_edits_and_reactions(nc, js, engine, nats_server):
    intake = ConsoleIngest(nc, Ingest(nc, None, CONFIG))
    notifier = Notifier(nc, ConsoleTransport(nc), CONFIG)
    await intake.start()
    await notifier.start()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "valor.console", "--chat", "5", "--idle", "3", "--wait", "30",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={"VALOR_NATS_URL": nats_server.url, "PATH": "/usr/bin:/bin"})
        out, err = await asyncio.wait_for(proc.communicate(b"/think\n/sleep\n"), 60)
        await settle(engine, notifier, expect_respond=2)
    finally:
        await notifier.stop()
        await intake.stop()
    lines = out.decode().splitlines()
    assert lines[:2] == ["you [#1]: /think", "you [#2]: /sleep"], (lines, err.decode())
    assert any(line.endswith("↩ #1: Thought about it.") for line in lines)
    assert "valor reacted 👀 to #1" in lines and "valor reacted ✅ to #1" in lines
    assert any("✎ ✅ #" in line for line in lines)  # the status message, edited to its end
    assert any("✅ #" in line and "done in" in line and "↩ #2" in line for line in lines)
    stored = await stored_messages(js, 5)
    assert [(m.message_id, m.chat_kind, m.sender_id) for m in stored] == [(1, "console", 5), (2, "console", 5)]


async def test_console_message_ids_continue_after_the_last_stored_one(nc, js):
    first = ConsoleIngest(nc, Ingest(nc, None, CONFIG))
    await first.start()
    assert (await nc.request("console.8.in", b'{"text": "one"}', timeout=5)).data == b'{"id": 1}'
    await first.stop()
    second = ConsoleIngest(nc, Ingest(nc, None, CONFIG))  # a restarted ingest
    await second.start()
    assert (await nc.request("console.8.in", b'{"text": "two"}', timeout=5)).data == b'{"id": 2}'
    assert (await nc.request("console.8.in", b'{"text": " "}', timeout=5)).data == b'{"error": "empty message"}'
    await second.stop()
