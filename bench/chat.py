"""The chat figures of ``make bench``: a reply at light load, and a catch-up after downtime.

Both run the real services as processes on a 3-node cluster (R3, file storage,
``sync_interval: always``): a scheduler and an executor from ``valor.stack``,
plus ingest and notifier.

- ``chat_reply``: the console transport (what ``make chat`` uses), one ``/help``
  at a time.  ``/help`` is answered by the command agent without a language
  model or a read of the log, so the figure is Valor's own path: ingest stores
  the message, the scheduler creates and dispatches its respond promise, the
  executor runs it, the notifier sends the reply.
- ``catchup``: messages sent to allowlisted private chats while ingest was
  down (the rest of Valor up), on the chaos suite's fake Telegram, which ingest
  reaches over HTTP like a remote API (``tests/chaos/telegram.py``).  Timed
  from starting the ingest process until every ``message.received`` is on CHAT.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time

from schemas import subjects
from tests.chaos.telegram import TelegramServer, World
from valor import bus
from valor.natsserver import NatsCluster
from valor.stack import Stack

from .measures import _wait_for_executors, percentile

QUIET = {"VALOR_LOG_LEVEL": "WARNING", "VALOR_ACK_WAIT": "30",
         "VALOR_TG_API_ID": "", "ANTHROPIC_API_KEY": ""}  # no Telegram, no LLM: console and command agent


def _stack(cluster: NatsCluster, config: str) -> Stack:
    path = cluster.root / "valor.toml"
    path.write_text(config)
    return Stack(cluster, schedulers=1, executors=1, slots=4, env_extra={**QUIET, "VALOR_CONFIG": str(path)})


async def _until(check, timeout: float, what: str, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if await check():
                return
        except Exception:
            pass
        await asyncio.sleep(every)
    raise TimeoutError(what)


# --- latency at light load: /help on the console ------------------------------------------


CONSOLE_CONFIG = """
[telegram]
chat_interval = {chat_interval}
"""


async def chat_reply(cluster: NatsCluster, samples: int, chat_interval: float = 0.0, warmup: int = 5,
                     gap: float = 0.05) -> dict[str, float]:
    """From the console's request entering ingest to the notifier sending the reply to ``/help``.

    ``chat_interval`` is the notifier's pacing between two messages in one chat,
    and between two reactions or edits (1 s by default, for Telegram's limits;
    architecture decision 29).  The 👀 reaction, sent when the notifier sees the
    attempt start before it ends, does not hold the reply back: the paced figure
    should match the unpaced one.  ``reacted_first`` counts the samples whose 👀
    went out before the reply.
    """
    stack = _stack(cluster, CONSOLE_CONFIG.format(chat_interval=chat_interval))
    py = sys.executable
    stack.add("ingest", [py, "-m", "services.ingest"])
    stack.add("notifier", [py, "-m", "services.notifier"])
    stack.start()
    nc = await bus.connect(cluster.url, name="bench-chat")
    chat = 1
    try:
        await _wait_for_executors(nc, 1)

        async def console_answers() -> bool:  # an empty line is refused without storing anything
            reply = await nc.request(f"console.{chat}.in", b'{"text": ""}', timeout=1)
            return b"empty message" in reply.data

        await _until(console_answers, 30, "ingest did not answer on the console")
        replies: dict[int, float] = {}
        reacted: dict[int, float] = {}
        arrived = asyncio.Event()

        async def on_out(msg) -> None:
            record = json.loads(msg.data)
            if record.get("op") == "sent" and record.get("reply_to") is not None:
                replies.setdefault(record["reply_to"], time.perf_counter())
                arrived.set()
            elif record.get("op") == "reacted" and record.get("emoji") == "👀":
                reacted.setdefault(record["id"], time.perf_counter())

        await nc.subscribe(f"console.{chat}.out", cb=on_out)
        latencies, reacted_first = [], 0
        for i in range(warmup + samples):
            t0 = time.perf_counter()
            answer = json.loads((await nc.request(f"console.{chat}.in", b'{"text": "/help"}', timeout=10)).data)
            message_id = answer["id"]
            while message_id not in replies:
                arrived.clear()
                await asyncio.wait_for(arrived.wait(), timeout=30)
            if i >= warmup:
                latencies.append((replies[message_id] - t0) * 1000)
                reacted_first += reacted.get(message_id, float("inf")) < replies[message_id]
            # A pause, and no pacing left over: the ✅ on the message goes one interval after the 👀.
            await asyncio.sleep(gap + 2 * chat_interval)
        return {"samples": len(latencies), "p50_ms": percentile(latencies, 50),
                "p95_ms": percentile(latencies, 95), "p99_ms": percentile(latencies, 99),
                "mean_ms": statistics.fmean(latencies), "max_ms": max(latencies),
                "reacted_first": reacted_first, "chat_interval_s": chat_interval}
    finally:
        await nc.close()
        stack.kill()


# --- catch-up: messages sent while ingest was down ----------------------------------------------


CATCHUP_CONFIG = """
[telegram]
allow_users = {users}
chat_interval = 0.0
"""


async def catchup(cluster: NatsCluster, chats: int = 50, per_chat: int = 20,
                  timeout: float = 120) -> dict[str, float]:
    """Seconds from starting ingest until all ``chats × per_chat`` missed messages are on CHAT."""
    users = list(range(10_001, 10_001 + chats))
    world = World(users=users)
    telegram = TelegramServer(world).start()
    for i in range(per_chat):  # interleaved, as a busy morning would be
        for user in users:
            world.say(user, f"message {i} from {user}")
    total = chats * per_chat
    stack = _stack(cluster, CATCHUP_CONFIG.format(users=users))
    py = sys.executable
    notifier = stack.add("notifier", [py, "-m", "tests.chaos.chatproc", "notifier", "--telegram", telegram.url])
    ingest = stack.add("ingest", [py, "-m", "tests.chaos.chatproc", "ingest", "--telegram", telegram.url])
    nc = await bus.connect(cluster.url, name="bench-catchup")
    try:
        js = nc.jetstream()
        await bus.ensure_streams(js, len(cluster.nodes))
        for name in ("scheduler-1", "executor-1"):
            stack.services[name].start()
        notifier.start()
        await _wait_for_executors(nc, 1)
        await asyncio.sleep(1.0)  # the scheduler and the notifier have read the (empty) log
        stored = 0
        first = None
        t0 = time.perf_counter()
        ingest.start()
        deadline = time.monotonic() + timeout
        while stored < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{stored}/{total} messages on CHAT after {timeout} s")
            if not ingest.alive:
                raise RuntimeError(f"ingest exited: {ingest.log.read_text()[-2000:]}")
            stored = (await js.stream_info(subjects.CHAT)).state.messages
            if stored and first is None:
                first = time.perf_counter() - t0
            await asyncio.sleep(0.01)
        seconds = time.perf_counter() - t0
        info = await js.stream_info(subjects.CHAT, subjects_filter="chat.*.in")
        per_subject = info.state.subjects or {}
        if len(per_subject) != chats or any(n != per_chat for n in per_subject.values()):
            raise AssertionError(f"CHAT holds {per_subject}, expected {per_chat} on each of {chats} chats")
        return {"messages": total, "chats": chats, "seconds": seconds, "first_stored_s": first or seconds,
                "messages_per_s": total / (seconds - (first or 0.0)) if seconds > (first or 0.0) else float("inf")}
    finally:
        await nc.close()
        stack.kill()
        telegram.stop()
