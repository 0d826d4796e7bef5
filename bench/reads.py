"""Reads at a large log beside a small one (decision 48): p99 of what users wait for.

The headline (``shipped``) is the ``make up`` stack as shipped (``bench.shipped.ShippedStack``:
three R3 nodes with ``sync_interval: always``, NATS users, both schedulers, the
executors, ingest, notifier and analytics).  Its log is written pipelined as the
``admin`` user (the only one allowed every kind of fact; make up's own user)
while the schedulers are stopped (a live one would dispatch the promises as
their ``created`` lands): ``created``/``dispatched``/``started`` and, for all but
the newest ``RUNNING``, ``succeeded``.  Then the schedulers start, as after a
restart, and the reads are timed once both (active and standby: a read goes to
either) have applied the stream's last sequence and the stack has gone quiet
(the notifier and analytics read the log too).  The reads are timed in turns,
1,000 rounds, so a burst of the machine's other work lands on all of them alike,
with how busy the machine's CPU was meanwhile.  Each read is timed as its
command does it, as the user that command connects as: ``valor show`` (the
served promise and its own events), ``valor list --state running``, ``valor
status`` (streams, consumers, executors, lease and counts) as ``cli``, and a
chat's ``/status``, ``/list``, ``/why`` (and ``/usage``, no target) through the
respond handler (no model) as ``executor``, each message carrying its sender.

``stripped`` is the same on one node and one scheduler process, no users: the
engine floor, labelled so.

Like for like: a large log and a small one differ only in how much history lies
*beside* what is read.  Both hold the same ``RUNNING`` running promises (what
runs is bounded by the executors' slots, not by the log's age), and the chat
read holds the same ``CHAT_PROMISES`` newest promises in both; the rest of the
history is spread over the other chats.  So each answer is the same size at
both ends, and a ratio above 1 is what the history itself costs the read.
"""

from __future__ import annotations

import asyncio
import os
import time

from promises.states import State
from schemas import subjects
from schemas.events import Created, Dispatched, Event, MessageReceived, Started, Succeeded, encode
from services.executor.respond import Responder
from valor import bus
from valor.client import ValorClient, scheduler_leader
from valor.config import parse
from valor.natsserver import NatsCluster
from valor.readmodel import ChatQuery, PromiseQuery, PromisesQuery, StatusQuery
from valor.stack import Stack

from .measures import cpu_seconds, percentile
from .shipped import ShippedStack

READS = ("valor_show", "valor_list_running", "valor_status", "chat_status", "chat_list", "chat_why")
CHATS = 1000  # the older history is spread over chats 2..CHATS
CHAT = 1  # the chat whose commands are timed: it holds the newest CHAT_PROMISES promises
CHAT_PROMISES = 50
RUNNING = 25  # the newest promises never end: ``list --state running`` answers these at any log size
SENDER = 7  # the user who writes the timed chat messages
WINDOW = 4000  # publishes in flight while filling


def chat_of(pid: int, promises: int) -> int:
    return CHAT if pid > promises - CHAT_PROMISES else pid % (CHATS - 1) + 2


def chain(pid: int, promises: int, now: float) -> list[Event]:
    """One promise's events in the layout: every one started, all but the newest ``RUNNING`` ended."""
    out: list[Event] = [Created(at=now, id=pid, title=f"p{pid}", task="echo", chat_id=chat_of(pid, promises)),
                        Dispatched(at=now, id=pid, attempt=1), Started(at=now, id=pid, attempt=1, executor="x")]
    if pid <= promises - RUNNING:
        out.append(Succeeded(at=now, id=pid, attempt=1, result={"ok": True}))
    return out


async def fill(url: str, promises: int, replicas: int | None = None, **connect) -> dict[str, float]:
    """Write the layout's ``promises`` pipelined (``WINDOW`` in flight); ``replicas``: create the streams first."""
    nc = await bus.connect(url, name="bench-fill", **connect)
    js = nc.jetstream()
    if replicas:
        await bus.ensure_streams(js, replicas)
    now, pending, events = time.time(), [], 0
    t0 = last_told = time.perf_counter()
    for pid in range(1, promises + 1):
        for event in chain(pid, promises, now):
            pending.append(await js.publish_async(bus.event_subject(event), encode(event)))
        if len(pending) >= WINDOW or pid == promises:
            await asyncio.gather(*pending)
            events += len(pending)
            pending = []
            if time.perf_counter() - last_told > 15:
                last_told = time.perf_counter()
                print(f"  reads: {events:,} events written, {events / (last_told - t0):,.0f} /s", flush=True)
    seconds = time.perf_counter() - t0
    await nc.close()
    return {"log_events": events, "fill_s": round(seconds, 1), "fill_events_per_s": round(events / seconds)}


async def caught_up(client: ValorClient, in_a_row: int = 20, timeout: float = 600) -> float:
    """Seconds until ``in_a_row`` served answers in a row reflect the stream's last sequence.

    A served read waits until its scheduler applied the log's end, or answers 503
    past 2 s (decision 48); the requests go to either scheduler of the queue group
    at random, so twenty in a row answered means both have caught up.
    """
    t0 = time.perf_counter()
    last = (await client.js.stream_info(subjects.PROMISES)).state.last_seq
    ok = 0
    while ok < in_a_row:
        assert time.perf_counter() - t0 < timeout, f"the schedulers did not reach seq {last} in {timeout:g} s"
        answer = await client.served(StatusQuery())
        if answer is not None and answer.seq >= last:
            ok += 1
        else:
            ok = 0
            await asyncio.sleep(0.5)
    return time.perf_counter() - t0


async def _rounds(reads: dict, samples: int) -> dict[str, list[float]]:
    """Each read ``samples`` times, in turns: a burst of the machine's other work lands on all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in reads}
    for _ in range(samples):
        for name, read in reads.items():
            t0 = time.perf_counter()
            await read()
            times[name].append((time.perf_counter() - t0) * 1000)
    return times


def machine_ticks() -> tuple[int, int]:
    """(busy, all) CPU ticks of the whole machine since boot, from /proc/stat: how busy it was meanwhile."""
    with open("/proc/stat") as f:
        ticks = [int(t) for t in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    return sum(ticks) - idle, sum(ticks)


async def timed(client: ValorClient, responder: Responder, promises: int, samples: int) -> dict[str, float]:
    """p99 of each read, and what the reads answered (the same at both ends: the module's docstring)."""
    chat, target = CHAT, promises  # the newest promise, running, in the timed chat

    async def show():
        await client.read_state(PromiseQuery(id=target))
        await client.events(subjects.promise_all(target))

    def said(text: str, in_chat: int = chat):
        return lambda: responder.answer(MessageReceived(chat_id=in_chat, message_id=10**9, sender_id=SENDER,
                                                        text=text, at=time.time()))

    out: dict[str, float] = {"loadavg_1m": round(os.getloadavg()[0], 2)}
    out["running_answered"] = len((await client.read(PromisesQuery(state=State.RUNNING))).promises)
    out["chat_answered"] = len((await client.read(ChatQuery(chat_id=chat))).promises)
    status = await client.status()  # each part answered, as this user: a refusal would only be listed
    assert not status["errors"], status["errors"]
    out["status_executors"] = len(status["executors"])
    reads = {"valor_show": show,
             "valor_list_running": lambda: client.read_state(PromisesQuery(state=State.RUNNING)),
             "valor_status": lambda: client.status(),
             "chat_status": said("/status"), "chat_list": said("/list"), "chat_why": said(f"/why {target}"),
             # No target: the sender's spend in every chat (decisions 75, 78).
             "chat_usage": said("/usage"),
             # Not like for like, and no target: a chat whose own history grows with the log.
             "old_chat_status": said("/status", CHAT + 1)}
    busy, total = machine_ticks()
    for name, times in (await _rounds(reads, samples)).items():
        # p50 beside p99: on a shared machine the tail is mostly the other sessions' scheduling.
        out[f"{name}_p50_ms"], out[f"{name}_p99_ms"] = round(percentile(times, 50), 2), round(percentile(times, 99), 2)
    busy_after, total_after = machine_ticks()
    out["machine_busy_during_reads"] = round((busy_after - busy) / max(total_after - total, 1), 2)
    out["old_chat_promises"] = sum(1 for pid in range(1, promises + 1) if chat_of(pid, promises) == CHAT + 1)
    out["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
    assert client.reads.get("folded", 0) == 0, "a read fell back to the log"
    return out


async def stripped(cluster: NatsCluster, promises: int, samples: int = 1000) -> dict[str, float]:
    """The engine floor: one scheduler process on ``cluster``, no users."""
    out = await fill(cluster.url, promises, replicas=len(cluster.nodes))
    stack = Stack(cluster, schedulers=1, executors=0)
    nc = await bus.connect(cluster.url, name="bench-reads")
    client = ValorClient(nc, by="bench")
    try:
        stack.start()
        out["schedulers_ready_s"] = round(await caught_up(client, in_a_row=1), 2)
        return {"promises": promises, **out, **await timed(client, Responder(parse(""), nc), promises, samples)}
    finally:
        await nc.close()
        stack.kill()


async def quiet(stack: ShippedStack, below_ms_per_s: float = 250, window: float = 16, timeout: float = 300) -> dict:
    """Wait until the stack's processes together use under ``below_ms_per_s`` of CPU over a ``window``
    (longer than analytics' 15 s between rounds, so a round in progress shows).

    After a large log lands its readers are busy with it for a while (the
    notifier's fold, analytics' DuckDB copy, the leader's snapshot); the
    reads are timed on a stack at rest, and what it still used is reported.
    """
    t0 = time.perf_counter()
    while True:
        pids = stack.processes()
        before = {n: _cpu(p) for n, p in pids.items()}
        await asyncio.sleep(window)
        used = {n: round((_cpu(p) - before[n]) * 1000 / window, 1) for n, p in pids.items()}
        total = sum(v for v in used.values() if v == v)
        waited = time.perf_counter() - t0
        if total < below_ms_per_s or waited > timeout:
            return {"quiet_wait_s": round(waited, 1), "stack_cpu_ms_per_s_at_start": round(total, 1),
                    "stack_busiest_at_start": max(used, key=lambda n: used[n] if used[n] == used[n] else -1)}
        busy = ", ".join(f"{n} {v:.0f}" for n, v in sorted(used.items(), key=lambda kv: -kv[1])[:3])
        print(f"  reads: stack busy {total:.0f} ms/s ({busy}), waiting for it to go quiet", flush=True)


def _cpu(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except OSError:
        return float("nan")  # it exited meanwhile


async def shipped(promises: int, samples: int = 1000) -> dict:
    """The reads on the ``make up`` stack as shipped, at a log of ``promises`` in the layout."""
    stack = ShippedStack()
    try:
        t0 = time.perf_counter()
        await asyncio.to_thread(stack.up, False)  # valor web is not part of make up
        await asyncio.to_thread(stack.supervisorctl, "stop", "scheduler:*")
        out: dict = {"promises": promises, "up_s": round(time.perf_counter() - t0, 1)}
        print(f"  reads: make up as shipped in {out['up_s']:g} s; writing {promises:,} promises", flush=True)
        out.update(await fill(stack.url, promises, **stack.user("admin")))
        print(f"  reads: {out['log_events']:,} events in {out['fill_s']:g} s; starting the schedulers", flush=True)
        await asyncio.to_thread(stack.supervisorctl, "start", "scheduler:*")
        nc = await bus.connect(stack.url, name="bench-reads", **stack.user("cli"))  # as `valor` connects
        respond_nc = await bus.connect(stack.url, name="bench-respond", **stack.user("executor"))  # as respond reads
        try:
            client = ValorClient(nc, by="bench")
            out["schedulers_ready_s"] = round(await caught_up(client), 1)
            print(f"  reads: both schedulers at the log's end {out['schedulers_ready_s']:g} s after start", flush=True)
            out.update(await quiet(stack))
            out["scheduler_active"] = bool(await scheduler_leader(nc.jetstream()))
            out.update(await timed(client, Responder(parse(""), respond_nc), promises, samples))
            # Nothing reacted to the history (no dispatch, no notice): the log is the layout, nothing more.
            stored = (await client.js.stream_info(subjects.PROMISES)).state.last_seq
            assert stored == out["log_events"], f"{stored - out['log_events']} events beside the layout"
            return out
        finally:
            await respond_nc.close()
            await nc.close()
    finally:
        await asyncio.to_thread(stack.down)


def table(small: dict, large: dict, title: str) -> str:
    """p99 per read at both ends, their ratio, and the targets (issue 13); then how each log was made."""
    rows = [(title, f"{small['log_events']:,} events", f"{large['log_events']:,} events", "ratio of p99s",
             "target: <= 50 ms p99, <= 2x")]
    for read in (*READS, "chat_usage", "old_chat_status"):
        a, b = small[f"{read}_p99_ms"], large[f"{read}_p99_ms"]
        ratio = b / max(a, 1e-9)
        target = ("met" if b <= 50 and ratio <= 2 else "NOT met") if read in READS else "no target"
        rows.append((read, f"{a:.2f} ms (p50 {small[f'{read}_p50_ms']:.2f})",
                     f"{b:.2f} ms (p50 {large[f'{read}_p50_ms']:.2f})", f"{ratio:.2f}x", target))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    for f in (small, large):
        rest = (f", stack quiet after {f['quiet_wait_s']:g} s more ({f['stack_cpu_ms_per_s_at_start']:g} ms/s of CPU)"
                if "quiet_wait_s" in f else "")
        lines.append(f"{f['log_events']:,} events: written in {f['fill_s']:g} s ({f['fill_events_per_s']:,} /s), "
                     f"schedulers at the end {f['schedulers_ready_s']:g} s after start{rest}, "
                     f"load average {f.get('loadavg_1m', '?')} -> {f.get('loadavg_1m_after', '?')}, the machine's "
                     f"CPU {f.get('machine_busy_during_reads', float('nan')):.0%} busy during the reads; answered "
                     f"{f['running_answered']} running, {f['chat_answered']} in the chat; the old chat holds "
                     f"{f['old_chat_promises']:,} promises")
    return "\n".join(lines)
