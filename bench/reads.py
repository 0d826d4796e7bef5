"""Reads at a large log beside a small one (decision 48): p99 of what users wait for.

The log is written directly (``created``/``dispatched``/``started`` and, for all
but the newest ``RUNNING``, ``succeeded``); one scheduler process serves the
reads.  Each read is timed as its command does it: ``valor show`` (the served
promise and its own events), ``valor list --state running``, ``valor status``
(streams, consumers, executors, lease and counts) and a chat's ``/status``,
``/list`` and ``/why`` through the respond handler (no model).

Like for like: a large log and a small one differ only in how much history lies
*beside* what is read.  Both hold the same ``RUNNING`` running promises (what
runs is bounded by the executors' slots, not by the log's age), and the chat
read holds the same ``CHAT_PROMISES`` newest promises in both; the rest of the
history is spread over the other chats.  So each answer is the same size at
both ends, and a ratio above 1 is what the history itself costs the read.
"""

from __future__ import annotations

import asyncio
import time

from promises.states import State
from schemas import subjects
from schemas.events import Created, Dispatched, MessageReceived, Started, Succeeded, encode
from services.executor.respond import Responder
from valor import bus
from valor.client import ValorClient
from valor.config import parse
from valor.natsserver import NatsCluster
from valor.readmodel import ChatQuery, PromiseQuery, PromisesQuery, StatusQuery
from valor.stack import Stack

from .measures import percentile

READS = ("valor_show", "valor_list_running", "valor_status", "chat_status", "chat_list", "chat_why")
CHATS = 1000  # the older history is spread over chats 2..CHATS
CHAT = 1  # the chat whose commands are timed: it holds the newest CHAT_PROMISES promises
CHAT_PROMISES = 50
RUNNING = 25  # the newest promises never end: ``list --state running`` answers these at any log size


def chat_of(pid: int, promises: int) -> int:
    return CHAT if pid > promises - CHAT_PROMISES else pid % (CHATS - 1) + 2


async def fill(cluster: NatsCluster, promises: int) -> int:
    nc = await bus.connect(cluster.url, name="bench-fill")
    js = nc.jetstream()
    await bus.ensure_streams(js, len(cluster.nodes))
    now, pending, events = time.time(), [], 0
    for pid in range(1, promises + 1):
        chain = [Created(at=now, id=pid, title=f"p{pid}", task="echo", chat_id=chat_of(pid, promises)),
                 Dispatched(at=now, id=pid, attempt=1), Started(at=now, id=pid, attempt=1, executor="x")]
        if pid <= promises - RUNNING:
            chain.append(Succeeded(at=now, id=pid, attempt=1, result={"ok": True}))
        for event in chain:
            pending.append(await js.publish_async(bus.event_subject(event), encode(event)))
        events += len(chain)
        if len(pending) >= 4000:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    await nc.close()
    return events


async def _p99(read, samples: int) -> float:
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        await read()
        times.append((time.perf_counter() - t0) * 1000)
    return round(percentile(times, 0.99), 2)


async def reads(cluster: NatsCluster, promises: int, samples: int = 100) -> dict[str, float]:
    events = await fill(cluster, promises)
    stack = Stack(cluster, schedulers=1, executors=0)
    nc = await bus.connect(cluster.url, name="bench-reads")
    client = ValorClient(nc, by="bench")
    try:
        stack.start()
        t0 = time.perf_counter()
        last = (await client.js.stream_info(subjects.PROMISES)).state.last_seq
        while (a := await client.served(StatusQuery())) is None or a.seq < last:
            await asyncio.sleep(0.2)
        ready_s = time.perf_counter() - t0
        responder = Responder(parse(""), nc)
        chat, target = CHAT, promises  # the newest promise, running, in the timed chat

        async def show():
            await client.read_state(PromiseQuery(id=target))
            await client.events(subjects.promise_all(target))

        def said(text: str, in_chat: int = chat):
            return lambda: responder.answer(MessageReceived(chat_id=in_chat, message_id=10**9, text=text, at=time.time()))

        out: dict[str, float] = {"log_events": events, "promises": promises, "scheduler_ready_s": round(ready_s, 2)}
        # What the reads answer, the same at both ends (the module's docstring): shown beside the figures.
        out["running_answered"] = len((await client.read(PromisesQuery(state=State.RUNNING))).promises)
        out["chat_answered"] = len((await client.read(ChatQuery(chat_id=chat))).promises)
        for name, read in (("valor_show", show),
                           ("valor_list_running", lambda: client.read_state(PromisesQuery(state=State.RUNNING))),
                           ("valor_status", lambda: client.status()),
                           ("chat_status", said("/status")), ("chat_list", said("/list")),
                           ("chat_why", said(f"/why {target}"))):
            out[f"{name}_p99_ms"] = await _p99(read, samples)
        # Not like for like, and no target: a chat whose own history grows with the log (promises / CHATS of it).
        # The chat read answers every promise of its chat, so this figure follows that chat's life.
        out["old_chat_answered"] = len((await client.read(ChatQuery(chat_id=CHAT + 1))).promises)
        out["old_chat_status_p99_ms"] = await _p99(said("/status", CHAT + 1), samples)
        assert client.reads.get("folded", 0) == 0, "a read fell back to the log"
        return out
    finally:
        await nc.close()
        stack.kill()
