"""Talking to a running Valor from Python: what the CLI, tests and demos use.

Requests go to COMMANDS and are answered on a private inbox once the resulting
events are stored.  Reads ask the schedulers' ``valor-reads`` service (decision
46), which answers from its projection once it has applied every event stored
before the request; with no scheduler answering, the client folds the PROMISES
log itself with the same projection (slower: it grows with the log).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import KeyNotFoundError, NotFoundError

from promises.projection import Projection, Promise
from promises.states import TERMINAL
from schemas import subjects
from schemas.commands import (
    AnyCommand,
    Approve,
    Cancel,
    CommandReply,
    NewPromise,
    Reject,
    Retry,
    Schedule,
    ScheduleChange,
    Submit,
    heartbeat_decoder,
    reply_decoder,
)
from schemas.events import PromiseEvent, decode_promise_event, encode
from valor import bus, readmodel
from valor.readmodel import Answer, PromiseQuery, PromisesQuery, StatusQuery

TERMINAL_STATES = tuple(sorted(TERMINAL))  # also the names of the events that end a promise
# Longer than the service's own wait for its projection to catch up (reads.FRESH_WAIT).
READ_TIMEOUT = 3.0
# How often a waiter reads the open ids anyway, in case its subscription to their endings lost one.
RECHECK = 5.0
# Up to this many ids a waiter's consumer filters by id; past it, by the three wildcards.
PER_ID_FILTERS = 32
# Endings arriving one after another are confirmed together, in one read at most this often.
BATCH = 0.1
# What one part of ``status`` may take: a stream without a leader must not hold up the rest for long.
STATUS_TIMEOUT = 2.0
# Reading the whole log waits this long for a cluster electing leaders (a raft election is 4–9 s).
READ_PATIENCE = 30.0
STREAMS = (subjects.CHAT, subjects.PROMISES, subjects.WORK, subjects.COMMANDS, subjects.DLQ)

T = TypeVar("T")


class CommandRefused(Exception):
    """The scheduler answered with an error a user can read."""




def state_of(answer: Answer) -> Projection:
    """An answer as a projection holding just the promises answered (and their dependents' ids)."""
    state = Projection()
    state.promises = {p.id: p for p in answer.promises}
    state.dependents = answer.dependents
    state.last_seq = answer.seq
    return state


class ValorClient:
    def __init__(self, nc: Client, by: str = "cli") -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.by = by
        self.reads = Counter()  # "served" / "folded": how reads were answered (tests, bench)

    async def request(self, command: AnyCommand, timeout: float = 10.0, ask_again: float | None = None,
                      still_waiting: Callable[[], None] | None = None) -> CommandReply:
        """Publish a command durably and wait for the scheduler's answer.

        The command is stored before we wait, so a scheduler that is restarting
        answers it when it is back; ``timeout`` bounds only our patience.  Every
        ``ask_again`` seconds without an answer the same command (same request id)
        is stored again, in case the first went to a scheduler that died holding it:
        the duplicate window, else the scheduler's request-id check, makes it once.
        """
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox, max_msgs=1)
        deadline = time.monotonic() + timeout
        try:
            command = msgspec.structs.replace(command, reply_to=inbox)
            for asked in itertools.count():
                # One message id per inbox and asking: a retried publish is absorbed by the duplicate
                # window, while a new asking (or a new invocation with the same request id) is stored
                # and answered, from the log, by the scheduler's request-id check.
                await self._store(command, f"{command.request_id}:{inbox.rsplit('.', 1)[-1]}:{asked}", deadline)
                wait = deadline - time.monotonic()
                if ask_again is not None:
                    wait = min(wait, ask_again)
                try:
                    msg = await sub.next_msg(timeout=max(0.1, wait))
                    break
                except TimeoutError:
                    if time.monotonic() >= deadline:
                        raise
                    if still_waiting is not None:
                        still_waiting()
                        still_waiting = None
        finally:
            await sub.unsubscribe()
        reply = reply_decoder.decode(msg.data)
        if not reply.ok:
            raise CommandRefused(reply.error)
        return reply

    async def _store(self, command: AnyCommand, msg_id: str, deadline: float) -> None:
        verb = command.__struct_config__.tag
        while True:  # the same Nats-Msg-Id makes a retried publish harmless
            try:
                await self.js.publish(subjects.command(verb), encode(command), timeout=2.0,
                                      headers={"Nats-Msg-Id": msg_id})
                return
            except (TimeoutError, nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError,
                    nats.js.errors.APIError) as exc:
                if isinstance(exc, nats.js.errors.APIError) and not bus.passing_refusal(exc):
                    raise
                await bus.check_quorum(self.nc)  # two of three nodes gone: say so now, not after a minute
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(0.2)

    async def submit(self, *tasks: NewPromise, timeout: float = 10.0, request_id: str | None = None,
                     **waiting) -> dict[str, int]:
        """Create a plan's promises; the same ``request_id`` creates them once, however often sent."""
        cmd = Submit(request_id=request_id or uuid.uuid4().hex, by=self.by, tasks=list(tasks))
        return (await self.request(cmd, timeout, **waiting)).ids

    async def cancel(self, promise_id: int, reason: str = "") -> None:
        await self.request(Cancel(request_id=uuid.uuid4().hex, by=self.by, id=promise_id, reason=reason))

    async def retry(self, promise_id: int) -> int:
        reply = await self.request(Retry(request_id=uuid.uuid4().hex, by=self.by, id=promise_id))
        return reply.ids["0"]

    async def approve(self, promise_id: int, reason: str = "") -> dict[str, int]:
        """Let the plan of ``promise_id`` that awaits approval run; its steps' names -> ids."""
        return (await self.request(Approve(request_id=uuid.uuid4().hex, by=self.by, id=promise_id,
                                           reason=reason))).ids

    async def reject(self, promise_id: int, reason: str = "") -> dict[str, int]:
        """Cancel every step of the plan of ``promise_id`` that awaits approval; names -> ids."""
        return (await self.request(Reject(request_id=uuid.uuid4().hex, by=self.by, id=promise_id,
                                          reason=reason))).ids

    async def schedule(self, task: NewPromise, *, cron: str | None = None, every: float | None = None,
                       tz: str = "UTC", missed: str = "skip", overlap: str = "skip", chat_id: int | None = None,
                       message_id: int | None = None) -> int:
        """A recurring promise (decision 51); its id."""
        cmd = Schedule(request_id=uuid.uuid4().hex, by=self.by, task=task, cron=cron, every=every, tz=tz,
                       missed=missed, overlap=overlap, chat_id=chat_id, message_id=message_id)
        return (await self.request(cmd)).ids["0"]

    async def change_schedule(self, schedule_id: int, verb: str) -> None:
        """Pause, resume or delete a schedule."""
        await self.request(ScheduleChange(request_id=uuid.uuid4().hex, by=self.by, id=schedule_id, verb=verb))

    # --- reading the log --------------------------------------------------------

    async def events(self, subject: str = subjects.ALL_PROMISE_EVENTS) -> list[tuple[int, PromiseEvent]]:
        """Every stored event on ``subject``, in log order, read to the end.

        Asked while the cluster elects a leader (a node was just lost), the stream's info and
        the reading consumer's creation time out for a few seconds: they are asked again.
        """
        out: list[tuple[int, PromiseEvent]] = []
        info = await bus.patiently("the log's info", lambda: self.js.stream_info(subjects.PROMISES),
                                   patience=READ_PATIENCE)
        if info.state.messages == 0:
            return out
        done = asyncio.Event()

        async def on_msg(msg):
            meta = msg.metadata
            try:
                out.append((meta.sequence.stream, decode_promise_event(msg.data)))
            except msgspec.DecodeError:
                pass
            if meta.num_pending == 0:
                done.set()

        sub = await bus.patiently("reading the log", lambda: self.js.subscribe(
            subject, stream=subjects.PROMISES, cb=on_msg, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL),
            patience=READ_PATIENCE)
        try:
            # An empty subject never delivers: ask the stream whether anything matches.
            try:
                await self.js.get_last_msg(subjects.PROMISES, subject)
            except Exception:
                return out
            await asyncio.wait_for(done.wait(), timeout=60)
        finally:
            await bus.stop_reading(self.js, sub, subjects.PROMISES)
        return out

    async def projection(self, subject: str = subjects.ALL_PROMISE_EVENTS) -> Projection:
        state = Projection()
        for seq, event in await self.events(subject):
            state.apply(event, seq)
        return state

    # --- the served read model (decision 48) -------------------------------------

    async def served(self, query: msgspec.Struct) -> Answer | None:
        """A scheduler's answer to ``query``, or None when none answered (or one said it lags)."""
        endpoint = next(e for e, q in readmodel.QUERIES.items() if isinstance(query, q))
        try:
            msg = await self.nc.request(readmodel.subject(endpoint), msgspec.json.encode(query),
                                        timeout=READ_TIMEOUT)
        except (TimeoutError, nats.errors.Error):
            return None
        if msg.headers and msg.headers.get("Nats-Service-Error-Code"):
            return None
        try:
            return readmodel.answer_decoder.decode(msg.data)
        except msgspec.DecodeError:
            return None

    async def read(self, query: msgspec.Struct) -> Answer:
        """The answer to ``query``: served by a scheduler, else folded here from the whole log."""
        answer = await self.served(query)
        if answer is not None:
            self.reads["served"] += 1
            return answer
        self.reads["folded"] += 1
        return readmodel.fold_answer(await self.projection(), query)

    async def read_state(self, query: msgspec.Struct) -> Projection:
        """The answer as a projection holding just the promises answered (and their dependents' ids)."""
        return state_of(await self.read(query))

    async def promises(self, *, state: str | None = None, chat_id: int | None = None, type: str | None = None,
                       ids: list[int] | None = None, limit: int = 0) -> list[Promise]:
        answer = await self.read(PromisesQuery(state=state, chat_id=chat_id, type=type, ids=ids, limit=limit))
        return answer.promises

    async def counts(self) -> dict[str, int]:
        """Promises by state."""
        return (await self.read(StatusQuery())).counts

    async def overview(self) -> tuple[dict[str, int], dict[int, str]]:
        """Promises by state, and the chats that cannot be reached (chat -> Telegram's refusal), in one read."""
        answer = await self.read(StatusQuery())
        return answer.counts, answer.unreachable

    async def status(self, counts: dict[str, int] | None = None,
                     unreachable: dict[int, str] | None = None) -> dict[str, Any]:
        """What ``valor status --json`` prints: the server, peers, lease, executors, streams, promise counts.

        Each part on its own: a stream without a leader (an election) leaves the others
        readable.  The counts are served (decision 48), or folded from the log with no
        scheduler answering; ``counts`` and ``unreachable`` (a page folding the log itself)
        skip that read.
        """
        nc = self.nc
        js = nc.jetstream(timeout=STATUS_TIMEOUT)
        info = nc._server_info or {}
        server = {
            "url": str(nc.connected_url.geturl()) if nc.connected_url else "",
            "name": info.get("server_name", ""),
            "version": info.get("version", ""),
            "cluster": info.get("cluster"),
            "jetstream": bool(info.get("jetstream")),
        }
        errors: list[str] = []

        async def part(what: str, coro: Awaitable[T], default: T) -> T:
            try:
                return await coro
            except (TimeoutError, nats.errors.Error) as exc:
                errors.append(f"{what}: {str(exc) or type(exc).__name__}")
                return default

        # The parts are independent round trips (two per stream, the lease, the executors' heartbeats):
        # asked together, `valor status` waits for the slowest, not for their sum (~20 on R3).
        lease = asyncio.ensure_future(part("scheduler lease", scheduler_leader(js), None))
        executors = asyncio.ensure_future(part("executors", _executors(js), {}))
        found = await asyncio.gather(*(part(f"stream {name}", _stream_status(js, name), {"error": "no answer"})
                                       for name in STREAMS))
        streams = dict(zip(STREAMS, found, strict=True))
        peers: list[str] = []
        promises_cluster = (streams.get(subjects.PROMISES) or {}).get("cluster") or {}
        if promises_cluster.get("leader"):
            peers = [promises_cluster["leader"]] + [r["name"] for r in promises_cluster.get("replicas", [])]
        promises: dict[str, int] = {}
        if streams.get(subjects.PROMISES) and "error" not in streams[subjects.PROMISES]:
            if counts is not None:
                promises, unreachable = counts, unreachable or {}
            else:
                promises, unreachable = await part("promises", self.overview(), ({}, {}))
        return {
            "server": server,
            "cluster": {"name": server["cluster"], "peers": peers},
            "scheduler": await lease,
            "executors": await executors,
            "streams": streams,
            "promises": promises,
            # Chats that refused Valor (blocked, kicked, deleted) and wrote nothing since: chat -> Telegram's reason.
            "unreachable": {str(chat): reason for chat, reason in (unreachable or {}).items()},
            "errors": errors,
        }

    async def promise(self, promise_id: int):
        """(promise state or None, its events) for one promise: the state served, the events by its subject."""
        answer = await self.read(PromiseQuery(id=promise_id))
        p = next((p for p in answer.promises if p.id == promise_id), None)
        events = await self.events(subjects.promise_all(promise_id)) if p is not None else []
        return p, [e for _, e in events]

    async def follow(self, ids: list[int], timeout: float | None = None, *,
                     enough: Callable[[dict[int, Promise]], bool] = lambda found: False,
                     recheck: float = RECHECK, retry: float = 0.2) -> tuple[dict[int, Promise], bool]:
        """Each promise as last read, once all have ended or ``enough(found)``; (found, timed out).

        Learns of endings from the log instead of polling (decision 55): it subscribes to the ids' terminal
        events before its one read of them all, so an ending stored after that read is delivered; each
        delivered ending is confirmed by reading the ids it names (a late attempt's ``succeeded`` can be one
        the projection refuses).  Every ``recheck`` seconds it reads the open ids again in case the
        subscription lost something (an ordered consumer being reset, a node going away).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        wanted, ended, woke = set(ids), set(), asyncio.Event()

        async def on_end(msg) -> None:
            if (pid := subjects.promise_id_of(msg.subject)) in wanted:
                ended.add(pid)
                woke.set()

        sub = await self._endings(ids, on_end)
        found: dict[int, Promise] = {}
        to_read, last_read = list(ids), 0.0
        try:
            while True:
                read_ok = True
                if to_read:
                    last_read = time.monotonic()
                    try:
                        found.update({p.id: p for p in await self.promises(ids=to_read)})
                    except nats.errors.ConnectionClosedError:
                        raise
                    except (TimeoutError, nats.errors.Error):
                        read_ok = False  # a node is away or a stream leader is being elected: read again soon
                    else:
                        if unknown := [pid for pid in to_read if pid not in found]:
                            raise CommandRefused(f"no promise #{unknown[0]}")
                still_open = [pid for pid in ids if pid not in found or not found[pid].terminal]
                if not still_open or enough(found):
                    return found, False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return found, True
                pause = recheck if read_ok and sub is not None else retry
                try:
                    await asyncio.wait_for(woke.wait(), pause if left is None else min(pause, left))
                except TimeoutError:
                    to_read = still_open
                else:
                    # Endings come in streams: gather them into one read at most every BATCH seconds.
                    if (gap := last_read + BATCH - time.monotonic()) > 0:
                        await asyncio.sleep(gap if left is None else min(gap, left))
                    woke.clear()
                    to_read = [pid for pid in still_open if pid in ended]
                    ended.clear()
        finally:
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    async def _endings(self, ids: list[int], cb):
        """An ordered consumer of the ids' terminal events from now on; None when JetStream cannot make one.

        Few ids: a filter per id and ending.  Many: the three wildcards, the ids picked out here.
        """
        if len(ids) <= PER_ID_FILTERS:
            filters = [subjects.promise(pid, name) for pid in ids for name in TERMINAL_STATES]
        else:
            filters = [subjects.promise("*", name) for name in TERMINAL_STATES]
        try:
            return await self.js.subscribe(filters[0], stream=subjects.PROMISES, cb=cb, ordered_consumer=True,
                                           deliver_policy=DeliverPolicy.NEW,
                                           config=ConsumerConfig(filter_subjects=filters))
        except nats.errors.ConnectionClosedError:
            raise
        except (TimeoutError, nats.errors.Error):
            return None  # the slow re-read still answers

    async def wait(self, ids: list[int], timeout: float | None = None, poll: float = 0.2) -> dict[int, str]:
        """Block until every promise is terminal; returns id -> state (TimeoutError past ``timeout``).

        ``poll``: how soon to read again after a read that went unanswered.
        """
        found, timed_out = await self.follow(list(dict.fromkeys(ids)), timeout, retry=poll)
        if timed_out:
            still_open = sorted(pid for pid in ids if pid not in found or not found[pid].terminal)
            raise TimeoutError(f"still open: {', '.join(f'#{i}' for i in still_open)}")
        return {pid: p.state for pid, p in found.items()}


# --- status: each part read on its own ------------------------------------------------


async def _stream_status(js, name: str) -> dict[str, Any] | None:
    try:
        si = await js.stream_info(name)
    except NotFoundError:
        return None
    consumers: dict[str, Any] = {}
    ephemeral = 0
    for ci in await js.consumers_info(name):
        if not ci.config.durable_name:
            ephemeral += 1  # readers such as this command's own log replay
            continue
        consumers[ci.name] = {"num_pending": ci.num_pending or 0, "num_ack_pending": ci.num_ack_pending or 0,
                              "num_redelivered": ci.num_redelivered or 0}
    cluster = None
    if si.cluster is not None:
        cluster = {
            "name": si.cluster.name,
            "leader": si.cluster.leader,
            "replicas": [{"name": r.name, "current": bool(r.current), "offline": bool(r.offline), "lag": r.lag or 0}
                         for r in si.cluster.replicas or []],
        }
    return {"messages": si.state.messages, "bytes": si.state.bytes, "first_seq": si.state.first_seq,
            "last_seq": si.state.last_seq, "replicas": si.config.num_replicas, "consumers": consumers,
            "ephemeral_consumers": ephemeral, "cluster": cluster}


async def scheduler_leader(js) -> str | None:
    try:
        kv = await js.key_value(subjects.LEASE_BUCKET)
        entry = await kv.get(subjects.LEASE_KEY)
    except (NotFoundError, KeyNotFoundError):
        return None
    return entry.value.decode() if entry.value else None


async def _executors(js) -> dict[str, Any]:
    """Each executor's last heartbeat.  The keys come from the bucket stream's subjects (one stream
    info) rather than ``kv.keys()``, whose ordered consumer is a cluster-wide create and delete."""
    stream, prefix = f"KV_{subjects.EXECUTORS_BUCKET}", f"$KV.{subjects.EXECUTORS_BUCKET}."
    try:
        info = await js.stream_info(stream, subjects_filter=f"{prefix}>")
    except NotFoundError:
        return {}
    direct = bool(info.config.allow_direct)

    async def last(subject: str):
        try:
            msg = await js.get_last_msg(stream, subject, direct)
            return subject[len(prefix):], heartbeat_decoder.decode(msg.data or b"")
        except (NotFoundError, msgspec.DecodeError):
            return None  # expired between the listing and the read, deleted, or not a heartbeat

    now = time.time()
    out = {}
    for found in await asyncio.gather(*map(last, sorted(info.state.subjects or {}))):
        if found is None:
            continue
        key, hb = found
        out[key] = {"queues": hb.queues, "slots": hb.slots, "busy": hb.busy,
                    "pools": [msgspec.to_builtins(p) for p in hb.slot_pools()], "host": hb.host, "pid": hb.pid,
                    "age": round(now - hb.at, 3)}
    return out
