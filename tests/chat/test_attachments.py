"""Photos and documents sent to Valor: saved into the chat's workspace, capped, once, never lost."""

import asyncio
import json
import sys
import time

import msgspec
import pytest
from telethon import types

from schemas.events import Attachment
from services.executor.respond import respond_handler
from services.executor.worker import Executor
from services.ingest import inbox
from services.ingest.accept import Rules, accept
from services.ingest.console import ConsoleIngest
from services.ingest.service import Ingest
from services.scheduler.service import Scheduler
from valor.client import ValorClient
from valor.config import parse

from .conftest import ALICE, stored_messages
from .fake_telegram import FakeTelegram

CSV = b"region,total\nnorth,12\nsouth,30\n"
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8 + b"\xff\xd9"  # 2,054 bytes
CAP = 4096


def config_for(workspace, cap: int = CAP):
    return parse(f'workspace = "{workspace}"\n[telegram]\nallow_users = [{ALICE}]\nattachment_max_bytes = {cap}\n'
                 "chat_interval = 0.0\n")


@pytest.fixture
def world():
    w = FakeTelegram()
    w.user(ALICE, "alice", "Alice")
    return w


@pytest.fixture
async def ingest(nc, world, tmp_path):
    started = []

    async def start(**kw):
        service = Ingest(nc, world.inbound(), config_for(tmp_path), **kw)
        await service.start(reconcile_forever=False)
        started.append(service)
        return service

    yield start
    for service in started:
        await service.stop()


def files_in(workspace) -> list[str]:
    """Every file under the workspace, part files included, relative to it."""
    return sorted(str(p.relative_to(workspace)) for p in workspace.rglob("*") if p.is_file())


# --- pure: names, paths, the cap ------------------------------------------------------------


@pytest.mark.parametrize("name, safe", [
    ("report.csv", "report.csv"),
    ("../../etc/passwd", "passwd"),
    ("C:\\Users\\ana\\notes.txt", "notes.txt"),
    (".env", "env"),
    ("..", "file"),
    ("my report (final) [v2].csv", "my_report__final___v2_.csv"),
    ("$(rm -rf ~);*.sh", "__rm_-rf_____.sh"),
    ("отчёт.pdf", "отчёт.pdf"),
    ("tab\there\x00.txt", "tab_here_.txt"),
    ("", "file"),
    (None, "file"),
])
def test_a_file_name_is_made_safe_for_the_inbox(name, safe):
    assert inbox.safe_name(name, "file") == safe


def test_a_long_name_is_cut_keeping_its_extension():
    name = inbox.safe_name("ж" * 200 + ".tar.gz", "file")
    assert name.endswith(".gz") and len(name.encode()) <= inbox.NAME_BYTES and name.startswith("жж")


def test_the_path_names_chat_and_message_and_a_file_over_the_cap_is_skipped_with_its_size():
    assert inbox.planned(-1001, 12, "report.csv", 300, "text/csv", 1000) == Attachment(
        name="report.csv", path="inbox/-1001/12-report.csv", size=300, mime_type="text/csv")
    assert inbox.planned(5, 12, "big.zip", 3 << 20, "application/zip", 2 << 20) == Attachment(
        name="big.zip", size=3 << 20, mime_type="application/zip", skipped="too big: 3.0 MB, the limit is 2.0 MB")


def test_a_photo_or_document_is_an_attachment_and_the_caption_stays_the_text(world):
    rules = Rules.from_config(config_for("/ws", cap=CAP))
    doc, _ = world.say(ALICE, ALICE, "/do sum the totals", media=world.document("report.csv", CSV, "text/csv"))
    photo, _ = world.say(ALICE, ALICE, "", media=world.photo(JPEG))
    voice, _ = world.say(ALICE, ALICE, "", media=world.document(None, b"OggS", "audio/ogg", voice=True))
    big, _ = world.say(ALICE, ALICE, "", media=world.document("big.bin", b"", size=CAP + 1))
    where, _ = world.say(ALICE, ALICE, "here", media=types.MessageMediaGeo(geo=types.GeoPointEmpty()))
    sticker = world.document("sticker.webp", b"RIFF", "image/webp")
    sticker.document.attributes.append(types.DocumentAttributeSticker(
        alt="👍", stickerset=types.InputStickerSetEmpty()))
    thumbs_up, _ = world.say(ALICE, ALICE, "", media=sticker)
    got = {m.id: accept(m, world.me, rules) for m in (doc, photo, voice, big, where, thumbs_up)}
    assert got[doc.id].text == "/do sum the totals"  # a command in a caption is still a command
    assert got[doc.id].attachments == [Attachment(name="report.csv", path=f"inbox/{ALICE}/{doc.id}-report.csv",
                                                  size=len(CSV), mime_type="text/csv")]
    assert (got[photo.id].text, got[photo.id].attachments) == ("", [Attachment(
        name="photo.jpg", path=f"inbox/{ALICE}/{photo.id}-photo.jpg", size=len(JPEG), mime_type="image/jpeg")])
    assert got[voice.id].attachments[0].path == f"inbox/{ALICE}/{voice.id}-voice.oga"
    assert got[big.id].attachments == [Attachment(name="big.bin", size=CAP + 1, mime_type="application/octet-stream",
                                                  skipped="too big: 4,097 bytes, the limit is 4,096 bytes")]
    assert (got[where.id].text, got[where.id].attachments) == ("[location] here", [])  # nothing to save
    assert (got[thumbs_up.id].text, got[thumbs_up.id].attachments) == ("[sticker]", [])  # a reaction, not work


# --- through ingest into the workspace ---------------------------------------------------------------


async def test_a_document_and_a_photo_are_downloaded_into_the_chat_workspace(js, world, ingest, tmp_path):
    await ingest()
    doc = await world.says(ALICE, ALICE, "/do sum the totals", media=world.document("report.csv", CSV, "text/csv"))
    photo = await world.says(ALICE, ALICE, "", media=world.photo(JPEG))
    stored = await stored_messages(js, ALICE)
    assert [(m.text, [(a.path, a.size, a.skipped) for a in m.attachments]) for m in stored] == [
        ("/do sum the totals", [(f"inbox/{ALICE}/{doc.id}-report.csv", len(CSV), "")]),
        ("", [(f"inbox/{ALICE}/{photo.id}-photo.jpg", len(JPEG), "")]),
    ]
    assert (tmp_path / stored[0].attachments[0].path).read_bytes() == CSV
    assert (tmp_path / stored[1].attachments[0].path).read_bytes() == JPEG
    assert files_in(tmp_path) == [f"inbox/{ALICE}/{doc.id}-report.csv", f"inbox/{ALICE}/{photo.id}-photo.jpg"]


async def test_a_file_over_the_cap_is_not_downloaded_and_the_message_says_so(js, world, ingest, tmp_path):
    await ingest()
    announced = await world.says(ALICE, ALICE, "the dump", media=world.document("dump.sql", b"x" * (CAP + 1)))
    # Telegram's size is believed first, the bytes that arrive after.
    understated = await world.says(ALICE, ALICE, "", media=world.document("log.txt", b"y" * (CAP + 10), size=10))
    stored = await stored_messages(js, ALICE)
    assert [m.attachments for m in stored] == [
        [Attachment(name="dump.sql", size=CAP + 1, mime_type="application/octet-stream",
                    skipped="too big: 4,097 bytes, the limit is 4,096 bytes")],
        [Attachment(name="log.txt", size=CAP + 10, mime_type="application/octet-stream",
                    skipped="too big: 4,106 bytes, the limit is 4,096 bytes")],
    ]
    assert [m.text for m in stored] == ["the dump", ""]
    assert announced.id not in world.downloads and understated.id in world.downloads
    assert files_in(tmp_path) == []  # no file, no part file


async def test_a_message_read_again_finds_its_file_and_does_not_download_it_again(js, nc, world, ingest, tmp_path):
    first = await ingest()
    message = await world.says(ALICE, ALICE, "", media=world.document("report.csv", CSV, "text/csv"))
    await first.stop()
    again = await ingest()  # a restart; Telethon's catch-up hands the message over again
    assert await again.take(message, caught_up=True) is False  # CHAT already has it
    assert world.downloads == [message.id]
    [stored] = await stored_messages(js, ALICE)
    assert stored.attachments[0].path == f"inbox/{ALICE}/{message.id}-report.csv"
    assert files_in(tmp_path) == [stored.attachments[0].path]


async def test_a_message_downloaded_twice_at_once_leaves_one_whole_file(js, nc, world, tmp_path):
    world.online = False
    missed, _ = world.say(ALICE, ALICE, "", media=world.document("report.csv", CSV, "text/csv"))
    world.online = True
    service = Ingest(nc, world.inbound(), config_for(tmp_path))
    await service.start(reconcile_forever=False)  # the backfill saves it...
    (tmp_path / f"inbox/{ALICE}/{missed.id}-report.csv").unlink()  # (as if that had not happened yet)
    event = world._event(missed)
    await asyncio.gather(world.deliver(event), service.reconcile(), world.deliver(event))  # ...and catch-up too
    await service.stop()
    assert [m.message_id for m in await stored_messages(js, ALICE)] == [missed.id]
    assert files_in(tmp_path) == [f"inbox/{ALICE}/{missed.id}-report.csv"]
    assert (tmp_path / f"inbox/{ALICE}/{missed.id}-report.csv").read_bytes() == CSV


async def test_a_download_that_fails_is_recorded_and_the_message_is_kept(js, world, ingest, tmp_path):
    slept = []

    async def sleep(seconds):
        slept.append(seconds)

    await ingest(sleep=sleep)
    world.floods["download"] = [7]  # waited out, then downloaded
    waited = await world.says(ALICE, ALICE, "", media=world.document("a.txt", b"a"))
    gone = world.document("b.txt", b"b")
    del world.files[gone.document.id]  # Telegram no longer has it
    await world.says(ALICE, ALICE, "what is in it?", media=gone)
    message, event = world.say(ALICE, ALICE, "", media=world.document("c.txt", b"c"))
    world.online = False  # cut off for good while downloading
    await world.deliver(event)
    stored = await stored_messages(js, ALICE)
    assert stored[0].attachments[0].path == f"inbox/{ALICE}/{waited.id}-a.txt" and 8 in slept
    assert [m.text for m in stored] == ["", "what is in it?", ""]  # every message kept
    assert stored[1].attachments[0].skipped.startswith("not saved: RPCError")
    assert stored[2].attachments[0].skipped == "not saved: ConnectionError: fake Telegram is offline"
    assert world.calls.count("download") == 2 + 1 + 3  # a flood wait and its retry, the gone file, three tries
    assert files_in(tmp_path) == [f"inbox/{ALICE}/{waited.id}-a.txt"]


# --- the path reaches the task ----------------------------------------------------------------------------


async def test_a_file_sent_with_do_is_named_in_the_created_promise_and_its_task_sees_it(nc, world, tmp_path):
    config = config_for(tmp_path)
    scheduler = Scheduler(nc, config=config)
    executor = Executor(nc, ["default", "respond"], slots=4, executor_id="attach-exec", ack_wait=5,
                        handlers={"respond": respond_handler(config, nc, env={})})
    service = Ingest(nc, world.inbound(), config)
    await executor.start()
    await scheduler.start()
    await service.start(reconcile_forever=False)
    client = ValorClient(nc)
    try:
        sent = await world.says(ALICE, ALICE, "/do echo sum the totals",
                                media=world.document("report.csv", CSV, "text/csv"))
        deadline = time.monotonic() + 20
        while not (done := [p for p in (await client.projection()).promises.values()
                            if p.spec.task == "echo" and p.state == "succeeded"]):
            assert time.monotonic() < deadline, "the echo task never ran"
            await asyncio.sleep(0.05)
    finally:
        await service.stop()
        await scheduler.stop()
        await executor.stop(grace=1)
    [task] = done
    path = f"inbox/{ALICE}/{sent.id}-report.csv"
    assert task.spec.input == f"sum the totals\n\nAttached: {path} (text/csv, {len(CSV)} B)"
    assert task.result["input"] == task.spec.input  # what the task was handed
    assert (tmp_path / path).read_bytes() == CSV  # and the file is there, in the workspace


# --- the console's /attach -------------------------------------------------------------------------------


async def test_console_attach_copies_a_local_file_into_the_workspace(nc, js, tmp_path):
    workspace, outside = tmp_path / "ws", tmp_path / "home"
    outside.mkdir()
    (outside / "report.csv").write_bytes(CSV)
    (outside / "big.bin").write_bytes(b"z" * (CAP + 1))
    intake = ConsoleIngest(nc, Ingest(nc, None, config_for(workspace)))
    await intake.start()

    async def send(body: dict) -> dict:
        return json.loads((await nc.request("console.3.in", json.dumps(body).encode(), timeout=5)).data)

    try:
        sent = await send({"text": "/do sum it", "file": str(outside / "report.csv")})
        too_big = await send({"text": "", "file": str(outside / "big.bin")})
        missing = await send({"text": "hi", "file": str(outside / "nope.txt")})
        a_dir = await send({"text": "hi", "file": str(outside)})
        relative = await send({"text": "hi", "file": "report.csv"})
    finally:
        await intake.stop()
    assert sent == {"id": 1, "attachments": [
        {"name": "report.csv", "path": "inbox/3/1-report.csv", "size": len(CSV), "mime_type": "text/csv"}]}
    assert too_big["attachments"][0]["skipped"] == "too big: 4,097 bytes, the limit is 4,096 bytes"
    assert missing == {"error": f"cannot attach {outside / 'nope.txt'}: No such file or directory"}
    assert a_dir == {"error": f"cannot attach {outside}: not a regular file"}
    assert relative == {"error": "cannot attach report.csv: not an absolute path"}
    assert (workspace / "inbox/3/1-report.csv").read_bytes() == CSV and files_in(workspace) == ["inbox/3/1-report.csv"]
    stored = await stored_messages(js, 3)
    assert [(m.message_id, m.text, [a.path or a.skipped for a in m.attachments]) for m in stored] == [
        (1, "/do sum it", ["inbox/3/1-report.csv"]), (2, "", ["too big: 4,097 bytes, the limit is 4,096 bytes"])]


async def test_the_console_sends_attach_path_and_caption(nc, js, tmp_path, nats_server):
    (tmp_path / "my notes.txt").write_text("remember the milk\n")
    intake = ConsoleIngest(nc, Ingest(nc, None, config_for(tmp_path / "ws")))
    await intake.start()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "valor.console", "--chat", "4", "--idle", "0.2", "--wait", "5",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            cwd=tmp_path, env={"VALOR_NATS_URL": nats_server.url, "PATH": "/usr/bin:/bin"})
        out, err = await asyncio.wait_for(proc.communicate(
            b'/attach "my notes.txt" read this\n/attach missing.txt\n/attach\n'), 30)
    finally:
        await intake.stop()
    assert out.decode().splitlines() == [
        "you [#1]: read this",
        "  📎 inbox/4/1-my_notes.txt",
        f"(not sent: cannot attach {tmp_path / 'missing.txt'}: No such file or directory)",
        "(not sent: usage: /attach PATH [caption])",
    ], err.decode()
    [stored] = await stored_messages(js, 4)
    assert msgspec.to_builtins(stored.attachments) == [
        {"name": "my_notes.txt", "path": "inbox/4/1-my_notes.txt", "size": 18, "mime_type": "text/plain"}]
