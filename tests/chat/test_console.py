"""The local console: a newcomer types, Valor answers, as in a Telegram private chat."""

import asyncio
import io
import sys

from services.ingest.console import ConsoleIngest
from services.ingest.service import Ingest
from services.notifier.service import Notifier
from services.notifier.transport import ConsoleTransport
from valor.console import Screen

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
        out, err = await asyncio.wait_for(proc.communicate(b"/think\n/sleep\n/steps\n"), 60)
        await settle(engine, notifier, expect_respond=3)
    finally:
        await notifier.stop()
        await intake.stop()
    lines = out.decode().splitlines()
    assert lines[:3] == ["you [#1]: /think", "you [#2]: /sleep", "you [#3]: /steps"], (lines, err.decode())
    assert any(line.endswith("↩ #1: Thought about it.") for line in lines)
    assert "valor reacted 👀 to #1" in lines and "valor reacted ✅ to #1" in lines
    assert any("✎ ✅ #" in line for line in lines)  # the status message, edited to its end
    assert any("✅ #" in line and "succeeded in" in line and "↩ #2" in line for line in lines)
    assert any(line.endswith("↩ #3: Three steps.") for line in lines)  # the plan's reply, its checklist below
    assert any("↩ #3: ✅ All 3 steps succeeded in" in line for line in lines)  # and its final reply
    assert not [line for line in lines if "✎ Three steps." in line]  # an edit shows the lines it changed
    stored = await stored_messages(js, 5)
    assert [(m.message_id, m.chat_kind, m.sender_id) for m in stored] == [
        (1, "console", 5), (2, "console", 5), (3, "console", 5)]


def test_the_console_shows_the_lines_an_edit_changed():
    out = io.StringIO()
    screen = Screen(out)
    screen.show({"op": "sent", "id": 50, "reply_to": 3, "text": "Two steps.\n\n🕓 1. a #2 — queued\n⏸ 2. b #3 — after #2"})
    screen.show({"op": "edited", "id": 50, "text": "Two steps.\n\n✅ 1. a #2 — 1.0s\n⏸ 2. b #3 — after #2"})
    screen.show({"op": "edited", "id": 50, "text": "Two steps.\n\n✅ 1. a #2 — 1.0s\n⏸ 2. b #3 — after #2"})
    screen.show({"op": "edited", "id": 50, "text": "Two steps."})
    assert out.getvalue().splitlines()[-2:] == ["valor [v1] ✎ ✅ 1. a #2 — 1.0s", "valor [v1] ✎ Two steps."]


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


async def test_a_document_on_the_console_is_a_file_whose_path_is_shown_with_its_caption(nc, tmp_path):
    import json

    sub = await nc.subscribe("console.5.out")
    transport = ConsoleTransport(nc, documents=tmp_path)
    first = await transport.send_document(5, "the beginning", "result-7.txt", b"the whole", reply_to=3)
    again = await transport.send_document(5, "the beginning", "result-7.txt", b"the whole, sent again", reply_to=3)
    records = [json.loads((await sub.next_msg(timeout=5)).data) for _ in range(2)]
    await sub.unsubscribe()
    assert [(r["id"], r["text"], r["reply_to"]) for r in records] == [(first, "the beginning", 3), (again, "the beginning", 3)]
    paths = [r["document"] for r in records]
    assert [open(p, "rb").read() for p in paths] == [b"the whole", b"the whole, sent again"]  # a resend overwrites none
    out = io.StringIO()
    screen = Screen(out)
    screen.show(records[0])
    assert out.getvalue().splitlines() == ["valor [v1] ↩ #3: the beginning", f"valor [v1] 📎 {paths[0]}"]
