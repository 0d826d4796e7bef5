"""The chat side against real NATS, a real scheduler and executor, and the fake Telegram."""

from __future__ import annotations

import asyncio
import time

import pytest

from schemas import subjects
from schemas.events import NoticeIntended, Notified, decode_chat
from services.executor.context import TaskFailed
from services.executor.respond import Responder, gap, skipped
from services.executor.worker import Executor
from services.ingest.service import Ingest
from services.notifier.service import Notifier
from services.scheduler.service import Scheduler
from valor.client import ValorClient
from valor.config import parse

from .fake_telegram import FakeTelegram

ALICE, CAROL, STRANGER = 501, 502, 666
GROUP, WORK_GROUP, OTHER_GROUP = -900, -901, -902

CONFIG = parse(f"""
[telegram]
allow_users = [{ALICE}, "@carol"]
allow_chats = [{GROUP}]
mention_names = ["valor"]
chat_interval = 0.0
edit_interval = 0.2
reconcile_interval = 180

[chats."{WORK_GROUP}"]
work_group = true
""")


async def answer(ctx):
    """The respond handler of these tests: a reply, sometimes promises; catch-up's summary and gap notice as shipped."""
    if skipped.is_skipped(ctx.input) or gap.is_gap(ctx.input):
        return await Responder(CONFIG, None)(ctx)
    text = ctx.input["text"]
    if text.startswith("/do "):
        return {"reply": "On it.", "promises": [{"name": "job", "type": "echo", "input": text[4:]}]}
    if text.startswith("/chain"):
        return {"reply": "Three steps.", "promises": [
            {"name": "one", "type": "echo", "input": 1},
            {"name": "two", "type": "fail", "input": {"times": 9}, "after": ["one"]},
            {"name": "three", "type": "echo", "input": 3, "after": ["two"]},
        ]}
    if text.startswith("/steps"):  # a plan of three steps, told as one checklist
        return {"reply": "Three steps.", "promises": [
            {"name": "setup", "type": "echo", "input": "set up"},
            {"name": "write", "type": "sleep", "input": {"seconds": 0.5}, "after": ["setup"]},
            {"name": "run", "type": "echo", "input": "run", "after": ["write"]},
        ]}
    if text.startswith("/sleep"):
        return {"reply": "Sleeping.", "promises": [{"name": "nap", "type": "sleep", "input": {"seconds": 1.0}}]}
    if text.startswith("/think"):  # an answer that takes a while to make
        await asyncio.sleep(1.5)
        return {"reply": "Thought about it."}
    if text.startswith("/huge"):  # past document_after_chars: one message with a document
        return {"reply": "".join(f"line {i}: " + "z" * 60 + "\n" for i in range(300))}
    if text.startswith("/long"):
        return {"reply": "y" * 10_000}
    if text.startswith("/broken"):
        raise TaskFailed("the agent is broken", retryable=False)
    return {"reply": f"echo: {text}"}


@pytest.fixture
def world():
    return FakeTelegram()


@pytest.fixture
async def engine(nc):
    scheduler = Scheduler(nc, config=CONFIG)
    executor = Executor(nc, ["default", "respond"], slots=8, handlers={"respond": answer},
                        executor_id="chat-exec", ack_wait=5)
    await executor.start()
    await scheduler.start()
    yield ValorClient(nc)
    await scheduler.stop()
    await executor.stop(grace=1)


@pytest.fixture
async def services(nc, world):
    """Start ingest and notifier on the fake; each test may start more (restarts)."""
    started = []

    async def start_ingest(**kw):
        ingest = Ingest(nc, world.inbound(), CONFIG, **kw)
        await ingest.start(reconcile_forever=False)
        started.append(ingest)
        return ingest

    async def start_notifier(**kw):
        notifier = Notifier(nc, world.transport(), kw.pop("config", CONFIG), **kw)
        await notifier.start()
        started.append(notifier)
        return notifier

    yield start_ingest, start_notifier
    for s in reversed(started):
        await s.stop()


async def stored_messages(js, chat_id: int | None = None):
    """Every message.received (and message.edited) on CHAT (optionally one chat), in order."""
    info = await js.stream_info(subjects.CHAT)
    subject = subjects.chat_in(chat_id) if chat_id is not None else "chat.*.in"
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            raw = await js.get_msg(subjects.CHAT, seq)
        except Exception:
            continue
        msg = decode_chat(raw.data)
        if chat_id is None or raw.subject == subject:
            out.append(msg)
    return out


async def settle(client: ValorClient, notifier: Notifier, expect_respond: int, timeout: float = 30.0):
    """Until every promise born from a chat ended and its terminal notice (a plan step: its plan's final) is recorded."""
    deadline = time.monotonic() + timeout
    while True:
        events = [e for _, e in await client.events()]
        state = await client.projection()
        chat_born = [p for p in state.promises.values() if p.spec.chat_id is not None]
        responds = [p for p in chat_born if p.spec.task == "respond"]
        noticed = {e.id for e in events if isinstance(e, Notified) and e.kind == "terminal"}
        plans = {e.id for e in events if isinstance(e, Notified) and e.kind == "final"}
        noticed |= {i for p in state.promises.values() if p.id in plans for i in p.children.values()}
        ended = all(p.terminal for p in chat_born)
        if len(responds) >= expect_respond and ended and all(p.id in noticed for p in chat_born):
            await notifier.run_until_idle()
            return state, events
        if time.monotonic() > deadline:
            open_ = [(p.id, p.state) for p in chat_born if p.id not in noticed]
            raise TimeoutError(f"{len(responds)}/{expect_respond} respond promises; not noticed: {open_}")
        await asyncio.sleep(0.1)


def notices(events, kind: str | None = None):
    return [e for e in events if isinstance(e, Notified) and (kind is None or e.kind == kind)]


def intents(events):
    return [e for e in events if isinstance(e, NoticeIntended)]


def dies_before_recording(kind: str, chat_id: int | None = None):
    """A notifier record hook that "kills" the notifier once it sent a ``kind`` notice, before recording it.

    Returns (the event set when it happened, the hook): the hook never returns, as a process that died would not.
    """
    killed = asyncio.Event()

    async def hook(event):
        if isinstance(event, Notified) and event.kind == kind and chat_id in (None, event.chat_id):
            killed.set()
            await asyncio.Event().wait()

    return killed, hook
