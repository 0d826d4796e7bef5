"""The chat figures of ``make bench``: a reply at light load, commands under load, and a catch-up.

Both run the real services as processes on a 3-node cluster (R3, file storage,
``sync_interval: always``): a scheduler and an executor from ``valor.stack``,
plus ingest and notifier.

- ``chat_reply``: the console transport (what ``make chat`` uses), one ``/help``
  at a time.  ``/help`` is answered by the command agent without a language
  model or a read of the log, so the figure is Valor's own path: ingest stores
  the message, the scheduler creates and dispatches its respond promise, the
  executor runs it, the notifier sends the reply.
- ``under_load``: commands that only read or cancel (``/status``, ``/list``,
  ``/why``, ``/help``, ``/cancel``) with every background slot of ``make up``'s
  executors busy and 1,000 promises queued behind them.
- ``catchup``: messages sent to allowlisted private chats while ingest was
  down (the rest of Valor up), on the chaos suite's fake Telegram, which ingest
  reaches over HTTP like a remote API (``tests/chaos/telegram.py``).  Timed
  from starting the ingest process until every ``message.received`` is on CHAT.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import sys
import time
from pathlib import Path

from promises.states import State
from schemas import subjects
from schemas.commands import NewPromise as T
from tests.chaos.telegram import TelegramServer, World
from valor import bus
from valor.client import ValorClient
from valor.natsserver import NatsCluster
from valor.stack import Stack

from .measures import _wait_for_executors, percentile

QUIET = {"VALOR_LOG_LEVEL": "WARNING", "VALOR_ACK_WAIT": "30",
         "VALOR_TG_API_ID": "", "ANTHROPIC_API_KEY": ""}  # no Telegram, no LLM: console and command agent


def _stack(cluster: NatsCluster, config: str, executors: int = 1, slots: int | str = 4) -> Stack:
    path = cluster.root / "valor.toml"
    path.write_text(config)
    return Stack(cluster, schedulers=1, executors=executors, slots=slots,
                 env_extra={**QUIET, "VALOR_CONFIG": str(path)})


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
        return await console_replies(nc, chat, samples, chat_interval, warmup, gap)
    finally:
        await nc.close()
        stack.kill()



def _first_start(events: dict[tuple[str, int], float], ids: set[int], after: float) -> float | None:
    """When the first of ``ids`` started after ``after``, as seen; None if none has."""
    return min((t for (kind, pid), t in events.items() if kind == "started" and pid in ids and t > after),
               default=None)

async def console_replies(nc, chat: int, samples: int, chat_interval: float, warmup: int = 5,
                          gap: float = 0.05) -> dict[str, float]:
    """``/help`` on the console of a running ingest and notifier, one at a time: from the request entering
    ingest to the reply sent, and to the 👀 reaction on the message (what the user first sees)."""

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

    sub = await nc.subscribe(f"console.{chat}.out", cb=on_out)
    latencies, eyes, reacted_first = [], [], 0
    try:
        for i in range(warmup + samples):
            t0 = time.perf_counter()
            answer = json.loads((await nc.request(f"console.{chat}.in", b'{"text": "/help"}', timeout=10)).data)
            message_id = answer["id"]
            while message_id not in replies:
                arrived.clear()
                await asyncio.wait_for(arrived.wait(), timeout=30)
            # A pause, and no pacing left over: the ✅ on the message goes one interval after the 👀.
            await asyncio.sleep(gap + 2 * chat_interval)
            if i >= warmup:
                latencies.append((replies[message_id] - t0) * 1000)
                reacted_first += reacted.get(message_id, float("inf")) < replies[message_id]
                if message_id in reacted:  # none when the notifier saw the attempt start and end together
                    eyes.append((reacted[message_id] - t0) * 1000)
    finally:
        await sub.unsubscribe()
    return {"samples": len(latencies), "p50_ms": percentile(latencies, 50),
            "p95_ms": percentile(latencies, 95), "p99_ms": percentile(latencies, 99),
            "mean_ms": statistics.fmean(latencies), "max_ms": max(latencies),
            "eyes_samples": len(eyes), "eyes_p50_ms": percentile(eyes, 50), "eyes_p99_ms": percentile(eyes, 99),
            "reacted_first": reacted_first, "chat_interval_s": chat_interval}


# --- under load: commands that only read or cancel, every background slot busy ---------------------


# As `make up` runs them, read from deploy/supervisord.conf: respond has slots of its own.
MAKE_UP_SLOTS = re.search(r"--slots (\S+)", (Path(__file__).resolve().parents[1] / "deploy" / "supervisord.conf")
                          .read_text()).group(1)
_SLOTS_PER_QUEUE = {q: int(n) for q, n in (part.split("=") for part in MAKE_UP_SLOTS.split(","))}
COMMANDS = ("/status", "/list", "/why {first}", "/help", "/cancel {target}")


async def under_load(cluster: NatsCluster, samples: int, backlog: int = 1000, executors: int = 2,
                     chat_interval: float = 0.0, gap: float = 0.1) -> dict[str, float]:
    """From a command entering ingest to the notifier sending its answer, with every background
    slot of ``make up``'s executors held by hour-long sleeps and ``backlog`` promises queued behind them.

    The chat's own ``/plan`` of sleeps holds the ``default`` slots (so ``/cancel`` has a running
    promise of the chat to stop; each cancelled one's slot goes to the next sleep in turn), CLI
    sleeps hold the ``code`` slots, and ``backlog`` more CLI sleeps wait.  Commands take turns:
    ``/status``, ``/list``, ``/why``, ``/help``, ``/cancel``; the next goes ``chat_interval`` plus
    ``gap`` after an answer.  Besides the answer, each ``/cancel`` is timed until the cancel is
    stored and until the slot it freed runs the next sleep (the running attempt was stopped).

    ``chat_interval`` is the notifier's pacing of a chat's messages (decision 29; 1 s shipped, for
    Telegram's limits).  At 0 the figure is Valor's own path; paced, an answer goes before the
    background notices waiting in its chat but may still wait up to one interval behind one that
    already went out (the chat's sleeps each announce their start).
    """
    stack = _stack(cluster, CONSOLE_CONFIG.format(chat_interval=chat_interval), executors, MAKE_UP_SLOTS)
    py = sys.executable
    stack.add("ingest", [py, "-m", "services.ingest"])
    stack.add("notifier", [py, "-m", "services.notifier"])
    stack.start()
    nc = await bus.connect(cluster.url, name="bench-under-load")
    chat = 1
    hour = {"seconds": 3600}
    try:
        await _wait_for_executors(nc, executors)
        client = ValorClient(nc, by="bench")

        async def console_answers() -> bool:
            reply = await nc.request(f"console.{chat}.in", b'{"text": ""}', timeout=1)
            return b"empty message" in reply.data

        await _until(console_answers, 30, "ingest did not answer on the console")
        replies: dict[int, float] = {}
        events: dict[tuple[str, int], float] = {}
        arrived = asyncio.Event()

        last_sent = [time.perf_counter()]

        async def on_out(msg) -> None:
            record = json.loads(msg.data)
            if record.get("op") == "sent":
                last_sent[0] = time.perf_counter()
            if record.get("op") == "sent" and record.get("reply_to") is not None:
                replies.setdefault(record["reply_to"], time.perf_counter())
                arrived.set()

        async def on_event(msg) -> None:
            _, pid, kind = msg.subject.split(".")
            events.setdefault((kind, int(pid)), time.perf_counter())

        await nc.subscribe(f"console.{chat}.out", cb=on_out)
        await nc.subscribe("promise.*.started", cb=on_event)
        await nc.subscribe("promise.*.cancelled", cb=on_event)

        async def say(text: str) -> tuple[int, float]:
            t0 = time.perf_counter()
            answer = json.loads((await nc.request(f"console.{chat}.in", json.dumps({"text": text}).encode(),
                                                  timeout=10)).data)
            message_id = answer["id"]
            while message_id not in replies:
                arrived.clear()
                await asyncio.wait_for(arrived.wait(), timeout=60)
            return message_id, t0

        default_slots = executors * _SLOTS_PER_QUEUE["default"]  # the chat's sleeps could hold them all
        cancels = sum(1 for i in range(samples) if COMMANDS[i % len(COMMANDS)].startswith("/cancel"))
        chat_sleeps = default_slots + cancels + 1
        await say("/plan\n" + "\n".join(f"s{i}: sleep: {json.dumps(hour)}" for i in range(chat_sleeps)))
        await client.submit(*(T(type="sleep", title=f"code slot {i}", queue="code", input=hour)
                              for i in range(executors * _SLOTS_PER_QUEUE["code"])))
        for start in range(0, backlog, 100):
            await client.submit(*(T(type="sleep", title=f"backlog {i}", input=hour)
                                  for i in range(start, min(backlog, start + 100))), timeout=60)
        state = await client.projection()
        mine = sorted(p.id for p in state.promises.values() if p.spec.chat_id == chat and p.spec.task == "sleep")
        # The slot a /cancel frees goes to the next sleep in turn, the chat's or the backlog's (decision 42).
        sleeps = {p.id for p in state.promises.values() if p.spec.task == "sleep"}
        background = executors * (_SLOTS_PER_QUEUE["default"] + _SLOTS_PER_QUEUE["code"])

        async def loaded() -> bool:
            state = await client.projection()
            running = sum(p.state == State.RUNNING for p in state.promises.values())
            return running == background

        await _until(loaded, 60, "the background slots did not fill", every=0.5)

        async def quiet() -> bool:  # the sleeps' status messages are out (one a chat_interval)
            return time.perf_counter() - last_sent[0] > 2 * chat_interval + 0.5

        await _until(quiet, 60, "the chat's status messages kept coming", every=0.1)
        queued = sum(p.state == State.QUEUED for p in (await client.projection()).promises.values())
        latencies: dict[str, list[float]] = {c.split()[0]: [] for c in COMMANDS}
        applied, freed = [], []
        target = 0
        for i in range(samples):
            command = COMMANDS[i % len(COMMANDS)]
            text = command.format(first=mine[0], target=mine[target])
            message_id, t0 = await say(text)
            latencies[command.split()[0]].append((replies[message_id] - t0) * 1000)
            if command.startswith("/cancel"):
                victim = mine[target]
                await _until(_seen(events, ("cancelled", victim)), 30, f"#{victim} was not cancelled")
                cancelled_at = events[("cancelled", victim)]

                async def slot_freed(after: float = cancelled_at) -> bool:
                    return _first_start(events, sleeps, after) is not None

                await _until(slot_freed, 30, f"#{victim}'s slot was not freed")
                applied.append((cancelled_at - t0) * 1000)
                freed.append((_first_start(events, sleeps, cancelled_at) - t0) * 1000)
                target += 1
            await asyncio.sleep(chat_interval + gap)
        state = await client.projection()
        running = sum(p.state == State.RUNNING for p in state.promises.values())
        everything = [v for values in latencies.values() for v in values]
        return {"samples": len(everything), "p50_ms": percentile(everything, 50),
                "p99_ms": percentile(everything, 99), "max_ms": max(everything),
                **{f"{name[1:]}_p99_ms": percentile(values, 99) for name, values in latencies.items()},
                "cancel_stored_p99_ms": percentile(applied, 99), "cancel_slot_freed_p99_ms": percentile(freed, 99),
                "background_slots": background, "running_at_end": running, "queued_at_start": queued,
                "chat_interval_s": chat_interval}
    finally:
        await nc.close()
        stack.kill()


def _seen(events: dict, key: tuple):
    async def check() -> bool:
        return key in events
    return check


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
