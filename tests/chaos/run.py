"""The chaos suite: real processes, kill -9 at random moments, then the log is judged.

``python -m tests.chaos.run --rounds 100`` (``make chaos``).  A 3-node JetStream
cluster (R3, ``sync_interval: always``), two schedulers (active and standby),
two executors, and ingest and notifier on a fake Telegram that lives in this
process.  Each round submits its share of the workload (mixed DAGs, see
``workload.py``) and sends chat messages (``/do echo …``, answered by the real
command agent); at a random moment it kills -9 one process — a service or a
NATS node — and, like a supervisor, starts it again.  One round stops
everything at once (kill -9 of every process and node) and starts it again;
another freezes one NATS node (SIGSTOP: it stops answering, a partition) for
longer than the scheduler's lease, then lets it go on.

Afterwards everything must finish, and ``tests.invariants.check_log`` reads the
log alone: every promise terminal, one terminal result each, one respond
promise per message, at most one terminal notice per promise, no attempt
dispatched without an owner, no dependent started early.  The harness adds
what only it knows: every message said in the chat reached CHAT, every
submitted task was created, WORK is empty, the fake Telegram never got the
same notice twice, and no request whose edit was taken ran its old text.
Some chat messages are edited or deleted soon after they are sent (before
or after their answer started: decision 50's rules are checked either way).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from schemas import subjects
from schemas.commands import NewPromise, Submit
from schemas.events import (
    Created,
    InputEdited,
    MessageDeleted,
    MessageReceived,
    RequestDeleted,
    decode_chat,
    encode,
)
from valor import bus
from valor.client import ValorClient
from valor.natsserver import NatsCluster
from valor.stack import Stack

from ..invariants import check_log
from . import workload
from .telegram import TelegramServer, World

USERS = [501, 502, 503, 504]
CONFIG = f"""
[telegram]
allow_users = {USERS}
chat_interval = 0.0
edit_interval = 0.5
reconcile_interval = 2
"""
KINDS = ("scheduler (active)", "scheduler (standby)", "executor", "ingest", "notifier", "nats node")


@dataclass
class Options:
    rounds: int = 100
    promises: int = 2000
    messages: int = 200
    seed: int = 1
    round_seconds: float = 6.0  # each round: submit, kill somewhere inside, restart
    full_stop_round: int | None = None  # default: a third of the way
    partition_round: int | None = None  # default: two thirds of the way
    partition_seconds: float = 12.0  # longer than the scheduler's 10 s lease
    drain_timeout: float = 180.0
    verbose: bool = True


@dataclass
class Figures:
    rounds: int = 0
    kills: Counter = field(default_factory=Counter)
    promises: int = 0
    submitted: int = 0
    messages_said: int = 0
    messages_stored: int = 0
    messages_edited: int = 0
    messages_deleted: int = 0
    edits_seen: Counter = field(default_factory=Counter)  # input_edited: taken / too late
    deletions_seen: Counter = field(default_factory=Counter)  # request_deleted: cancelled / too late
    responds: int = 0  # respond promises in the log
    answered: int = 0  # of them, those that promised their echo (not cancelled by a deletion)
    events: int = 0
    full_stops: int = 0
    partitions: int = 0
    exits: Counter = field(default_factory=Counter)  # services that exited on their own (and were restarted)
    # seconds from a kill -9 to the first promise created after it (a probe submitted at the kill), per kind
    failover: dict[str, list[float]] = field(default_factory=dict)
    faults: Counter = field(default_factory=Counter)  # --net: network faults made, by kind (tests/chaos/netrun.py)
    notes: list[str] = field(default_factory=list)  # what could not be made here, said in the table
    seconds: float = 0.0
    violations: dict[str, list[str]] = field(default_factory=dict)

    @property
    def total_violations(self) -> int:
        return sum(len(v) for v in self.violations.values())

    def table(self) -> str:
        rows = [("rounds", self.rounds)]
        rows += [(f"kill -9: {kind}", self.kills[kind]) for kind in KINDS if self.kills[kind] or not self.faults]
        rows += [(f"net: {kind}", n) for kind, n in self.faults.items()]
        rows += [("full stop and start (kill -9 of all)", self.full_stops),
                 ("NATS node partitioned (SIGSTOP/SIGCONT)", self.partitions),
                 ("exited on their own, restarted", sum(self.exits.values())),
                 ("tasks submitted", self.submitted), ("chat messages said", self.messages_said),
                 ("chat messages edited", self.messages_edited),
                 ("  edits taken / too late", f"{self.edits_seen['taken']}/{self.edits_seen['too late']}"),
                 ("chat messages deleted", self.messages_deleted),
                 ("  deletions cancelling / too late",
                  f"{self.deletions_seen['cancelled']}/{self.deletions_seen['too late']}"),
                 ("chat messages on CHAT", self.messages_stored), ("promises in the log", self.promises),
                 ("events in the log", self.events), ("seconds", round(self.seconds))]
        for kind, took in sorted(self.failover.items()):
            rows += [(f"kill -9 {kind} -> created: p50 / p99 / max s",
                      " / ".join(f"{percentile(took, q):.1f}" for q in (50, 99, 100)))]
        rows += [(f"violations: {name}", len(found)) for name, found in self.violations.items()]
        rows += [("violations", self.total_violations)]
        width = max(len(k) for k, _ in rows)
        return "\n".join([f"{k:<{width}}  {v:>7}" for k, v in rows] + [f"note: {n}" for n in self.notes])


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile: with few rounds, p99 is the worst but one in a hundred."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, -(-len(ordered) * q // 100) - 1))] if ordered else float("nan")


def log(opts: Options, text: str) -> None:
    if opts.verbose:
        print(f"[chaos {time.strftime('%H:%M:%S')}] {text}", flush=True)


class Chaos:
    def __init__(self, opts: Options, cluster: NatsCluster | None = None) -> None:
        self.opts = opts
        self.rng = random.Random(opts.seed)
        self.figures = Figures()
        self.cluster = cluster or NatsCluster(size=3)
        self.world = World(users=USERS)
        self.telegram = TelegramServer(self.world)
        config = self.cluster.root / "valor.toml"
        config.write_text(CONFIG)
        env = {"VALOR_CONFIG": str(config), "ANTHROPIC_API_KEY": "", "VALOR_TG_API_ID": ""}
        self.stack = Stack(self.cluster, schedulers=2, executors=2, slots=4, env_extra=env)
        py = sys.executable
        for kind in ("ingest", "notifier"):
            self.stack.add(kind, [py, "-m", "tests.chaos.chatproc", kind, "--telegram", self.telegram.url])
        self.nc = None
        self.requests: dict[str, int] = {}  # request id -> tasks in it
        self.said = 0
        self.round = 0
        self.kinds: list[str] = []
        self.hold: set[str] = set()  # services down on purpose: the supervisor leaves them be
        self.probes: list[asyncio.Task] = []

    # --- the run ------------------------------------------------------------------

    async def run(self) -> Figures:
        t0 = time.monotonic()
        self.cluster.start()
        self.telegram.start()
        try:
            self.nc = await bus.connect(self.cluster.url, name="chaos")
            await self._ensure_streams()
            self.stack.start()
            supervisor = asyncio.create_task(self._supervise())
            await self._wait_for_executors()
            await self._rounds()
            await self._drain()
            await self._judge()
            supervisor.cancel()
        finally:
            self.figures.seconds = time.monotonic() - t0
            if self.nc is not None:
                await self.nc.close()
            self.stack.kill()
            self.telegram.stop()
            self.cluster.cleanup()
        return self.figures

    async def _rounds(self) -> None:
        opts = self.opts
        plans = workload.plans(self.rng, opts.promises)
        full_stop = opts.full_stop_round if opts.full_stop_round is not None else opts.rounds // 3
        partition = opts.partition_round if opts.partition_round is not None else 2 * opts.rounds // 3
        per_round = -(-len(plans) // max(opts.rounds, 1))
        msgs_per_round = -(-opts.messages // max(opts.rounds, 1))
        for r in range(opts.rounds):
            self.round = r + 1
            mine, plans = plans[:per_round], plans[per_round:]
            n_msgs = min(msgs_per_round, opts.messages - self.said)
            feed = asyncio.create_task(self._feed(mine, n_msgs, opts.round_seconds * 0.6))
            await self._break(r, full_stop, partition)
            await feed
            self.figures.rounds += 1
        await asyncio.gather(*self.probes)
        if plans:  # fewer rounds than plans can hold: the rest goes in now
            await self._feed(plans, 0, 0)
        while self.said < opts.messages:
            await self._feed([], opts.messages - self.said, 0)

    async def _feed(self, plans: list[list[NewPromise]], n_msgs: int, over: float) -> None:
        """Submit the plans and say the messages, spread over ``over`` seconds."""
        items = [("plan", p) for p in plans] + [("msg", None)] * n_msgs
        self.rng.shuffle(items)
        for kind, plan in items:
            if kind == "plan":
                await self._submit(plan)
            else:
                self.said += 1
                chat, text = USERS[self.said % len(USERS)], workload.chat_text(self.rng, self.said)
                message_id = self.world.say(chat, text)
                self.figures.messages_said += 1
                if change := workload.chat_change(self.rng):  # soon after: before or after it started
                    await asyncio.sleep(self.rng.uniform(0.0, 0.4))
                    if change == "edit" and self.world.edit(chat, message_id, text + workload.EDITED):
                        self.figures.messages_edited += 1
                    elif change == "delete":
                        self.world.delete(chat, message_id)
                        self.figures.messages_deleted += 1
            await asyncio.sleep(over / max(len(items), 1))

    async def _submit(self, plan: list[NewPromise]) -> None:
        """Store the command on COMMANDS (retried with one id until acked); its reply is not needed."""
        request_id = f"chaos-{self.round}-{len(self.requests)}"
        self.requests[request_id] = len(plan)
        self.figures.submitted += len(plan)
        await self._store_command(Submit(request_id=request_id, by="chaos", tasks=plan))

    async def _store_command(self, cmd: Submit) -> None:
        while True:
            try:
                await self.nc.jetstream().publish(subjects.command("submit"), encode(cmd), timeout=1,
                                                  headers={bus.MSG_ID: cmd.request_id})
                return
            except Exception:
                await asyncio.sleep(0.1)

    # --- breaking things ----------------------------------------------------------------

    async def _break(self, r: int, full_stop: int, partition: int) -> None:
        """Round r's fault, while its share of the workload is fed (``--net`` replaces this)."""
        if r == full_stop:
            await self._full_stop()
        elif r == partition:
            await self._partition()
        await asyncio.sleep(self.rng.uniform(0, self.opts.round_seconds * 0.5))
        await self._kill_one()

    def _next_kind(self) -> str:
        """Kinds come in shuffled cycles, so every kind is killed about as often as the others."""
        if not self.kinds:
            self.kinds = self.rng.sample(KINDS, len(KINDS))
        return self.kinds.pop()

    async def _kill_one(self) -> None:
        kind = self._next_kind()
        if kind == "nats node":
            node = self.rng.choice(self.cluster.nodes)
            log(self.opts, f"round {self.round}: kill -9 NATS node {node.name}")
            node.kill()
            self._probe(kind)
            await asyncio.sleep(self.rng.uniform(0.3, 2.0))
            node.start()
            await self._wait_cluster_current()
        else:
            name = await self._pick(kind)
            log(self.opts, f"round {self.round}: kill -9 {name} ({kind})")
            self.hold.add(name)
            self.stack.services[name].kill()
            if kind == "scheduler (active)":
                self._probe(kind)
            await asyncio.sleep(self.rng.uniform(0.1, 1.0))
            self.stack.services[name].start()
            self.hold.discard(name)
        self.figures.kills[kind] += 1

    def _probe(self, kind: str) -> None:
        """Time from now (a kill) until a new promise is created: one noop submitted at once, its
        command retried under one id until stored; the scheduler answers once `created` is stored."""
        request_id = f"probe-{self.round}"
        self.requests[request_id] = 1
        t0 = time.monotonic()

        async def probe() -> None:
            inbox = self.nc.new_inbox()
            sub = await self.nc.subscribe(inbox, max_msgs=1)
            cmd = Submit(request_id=request_id, by="chaos", tasks=[NewPromise(title=request_id)], reply_to=inbox)
            await self._store_command(cmd)
            try:
                await sub.next_msg(timeout=120)
            except TimeoutError:  # counted by the judge as a task not created, if it never is
                return
            self.figures.failover.setdefault(kind, []).append(time.monotonic() - t0)

        self.probes.append(asyncio.create_task(probe()))

    async def _supervise(self) -> None:
        while True:
            for name in self.stack.supervise(self.hold):
                self.figures.exits[name] += 1
                log(self.opts, f"{name} exited on its own; restarted")
            await asyncio.sleep(0.5)

    async def _pick(self, kind: str) -> str:
        if kind == "executor":
            return self.rng.choice(["executor-1", "executor-2"])
        if kind in ("ingest", "notifier"):
            return kind
        active = await self._active_scheduler()
        if kind == "scheduler (active)":
            return active
        return "scheduler-2" if active == "scheduler-1" else "scheduler-1"

    async def _active_scheduler(self) -> str:
        # The bucket lookup is a JetStream API call too: right after a node came back it may time out, so it
        # is retried with the read (a CI run failed here, in the harness, under load).
        for _ in range(100):
            try:
                kv = await self.nc.jetstream().key_value("valor_scheduler")
                pid = int((await kv.get("leader")).value.decode().split("-")[-2])
                for name in ("scheduler-1", "scheduler-2"):
                    s = self.stack.services[name]
                    if s.alive and s.proc.pid == pid:
                        return name
            except Exception:
                pass
            await asyncio.sleep(0.1)
        return self.rng.choice(["scheduler-1", "scheduler-2"])  # no leader now: either is as good

    async def _full_stop(self) -> None:
        log(self.opts, f"round {self.round}: full stop (kill -9 of every service and NATS node), then start")
        self.hold.update(self.stack.services)
        self.stack.kill()
        for node in self.cluster.nodes:
            node.kill()
        await asyncio.sleep(1.0)
        for node in self.cluster.nodes:
            node.start()
        await self._wait_cluster_current()
        self.stack.start()
        self.hold.clear()
        self.figures.full_stops += 1

    async def _partition(self) -> None:
        node = self.rng.choice(self.cluster.nodes)
        log(self.opts, f"round {self.round}: NATS node {node.name} partitioned (SIGSTOP) "
                       f"for {self.opts.partition_seconds:.0f} s")
        os.kill(node.proc.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(self.opts.partition_seconds)
        finally:
            os.kill(node.proc.pid, signal.SIGCONT)
        await self._wait_cluster_current()
        self.figures.partitions += 1

    async def _wait_cluster_current(self, timeout: float = 60.0) -> None:
        """Until every stream has a leader and every replica is current (or the wait ran out)."""
        deadline = time.monotonic() + timeout
        js = self.nc.jetstream()
        while time.monotonic() < deadline:
            try:
                healthy = True
                for stream in (subjects.PROMISES, subjects.CHAT, subjects.WORK, subjects.COMMANDS):
                    info = await js.stream_info(stream)
                    c = info.cluster
                    if c is None or not c.leader or len(c.replicas or []) != 2 or not all(
                            r.current for r in c.replicas):
                        healthy = False
                        break
                if healthy:
                    return
            except Exception:
                pass
            await asyncio.sleep(0.3)
        log(self.opts, f"cluster not current after {timeout:.0f} s; going on")

    # --- the end ------------------------------------------------------------------------

    async def _ensure_streams(self) -> None:
        """Once the cluster elected a meta leader (a fresh cluster needs a few seconds)."""
        for _ in range(60):
            try:
                return await bus.ensure_streams(self.nc.jetstream(), 3)
            except Exception:
                await asyncio.sleep(0.5)
        raise RuntimeError("the cluster never accepted the streams")

    async def _wait_for_executors(self) -> None:
        js = self.nc.jetstream()
        for _ in range(300):
            try:
                if await (await js.key_value("valor_executors")).keys():
                    return
            except Exception:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError("no executor announced itself\n" + self.stack.logs())

    async def _drain(self) -> None:
        """Until every submitted task and said message ended, with its notices."""
        log(self.opts, "draining: waiting for every promise to end and be noticed")
        deadline = time.monotonic() + self.opts.drain_timeout
        client = ValorClient(self.nc)
        while True:
            try:
                events = await client.events()
                messages = await self._stored_messages()
                found = check_log(events, messages)
                created = sum(1 for _, e in events if isinstance(e, Created) and e.request_id in self.requests)
                stored = {(m.chat_id, m.message_id) for m in messages}
                unread = [m for c, ids in self.world.inbound_ids().items() for m in ids if (c, m) not in stored]
                expected = sum(self.requests.values())  # the tasks submitted and a probe per kill that has one
                # A deletion said last may still be on its way to its request (it is judged after).
                untold = self._deletions_untold(events, await self._stored_messages(MessageDeleted))
                done = (created == expected and not unread  # a deleted one may never be read
                        and not found["promise not terminal"] and not found["terminal notice missing"]
                        and not found["message without exactly one respond promise"]
                        and not found["edit unanswered"] and not untold)
                if done:
                    return
                why = (f"{created}/{expected} created, {len(unread)} messages unread, "
                       f"{len(found['promise not terminal'])} open, {len(found['terminal notice missing'])} unnoticed, "
                       f"{len(untold)} deletions untold")
            except Exception as exc:
                why = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                log(self.opts, f"drain timed out: {why}")
                return
            await asyncio.sleep(1.0)

    async def _stored_messages(self, kind: type = MessageReceived) -> list:
        """What CHAT holds of ``kind`` (messages by default; deletions for the harness's check)."""
        js = self.nc.jetstream()
        info = await js.stream_info(subjects.CHAT)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                event = decode_chat((await js.get_msg(subjects.CHAT, seq)).data)
            except Exception:
                continue
            if isinstance(event, kind):
                out.append(event)
        return out

    async def _judge(self) -> None:
        client = ValorClient(self.nc)
        events = await client.events()
        messages = await self._stored_messages()

        deleted = {e.id for _, e in events if isinstance(e, RequestDeleted) and e.cancelled}

        def expected(spec: Created) -> str | None:
            if spec.request_id in self.requests:
                return workload.expected_state(spec.name)  # a probe: no name, "succeeded"
            if spec.id in deleted:
                return "cancelled"  # its message was deleted before it started
            return "succeeded"  # respond promises and the echo each one promises

        found = check_log(events, messages, expected)
        found.update(self._harness_checks(events, messages))
        found["deletion stored, its request not told"] = self._deletions_untold(
            events, await self._stored_messages(MessageDeleted))
        found["work left in WORK"] = await self._work_left()
        self.figures.violations = found
        self.figures.events = len(events)
        self.figures.promises = len({e.id for _, e in events if isinstance(e, Created)})
        self.figures.messages_stored = len(messages)
        responds = [e for _, e in events if isinstance(e, Created) and e.task == "respond"]
        self.figures.responds = len(responds)
        self.figures.answered = sum(1 for e in responds if e.id not in deleted)
        for _, e in events:
            if isinstance(e, InputEdited):
                self.figures.edits_seen["taken" if e.applied else "too late"] += 1
            elif isinstance(e, RequestDeleted):
                self.figures.deletions_seen["cancelled" if e.cancelled else "too late"] += 1

    def _harness_checks(self, events, messages) -> dict[str, list[str]]:
        stored = {(m.chat_id, m.message_id) for m in messages}
        said = self.world.inbound_ids()
        lost = [f"message {c}/{m} said, not on CHAT" for c, ids in said.items() for m in ids if (c, m) not in stored]
        per_request = Counter(e.request_id for _, e in events if isinstance(e, Created) and e.request_id in self.requests)
        missing = [f"{r}: {per_request.get(r, 0)} of {n} tasks created" for r, n in self.requests.items()
                   if per_request.get(r, 0) != n]
        # What Telegram saw: the same notice twice in reply to one message means one was sent twice.
        sent = Counter((m["chat_id"], m["reply_to"], m["text"]) for m in self.world.sent())
        twice = [f"{n} x in chat {c}, reply to {r}: {t[:60]!r}" for (c, r, t), n in sent.items() if n > 1]
        # An edit taken before the request started: what ran is the new text, never the old.
        taken = {e.id for _, e in events if isinstance(e, InputEdited) and e.applied}
        old_ran = [f"#{e.id} (of #{e.parent_id}) ran {e.input!r} after its request's edit was taken"
                   for _, e in events if isinstance(e, Created) and e.parent_id in taken
                   and workload.EDITED not in str(e.input)]
        return {"message said, lost before CHAT": lost, "submitted task not created": missing,
                "notice sent twice to Telegram": twice, "edit taken, old text ran": old_ran}

    @staticmethod
    def _deletions_untold(events, deletions) -> list[str]:
        """Every deletion ingest stored reaches the request of each message it names (private chats: by id)."""
        responds = {(e.chat_id, e.message_id): e.id for _, e in events if isinstance(e, Created) and e.task == "respond"}
        told = {e.id for _, e in events if isinstance(e, RequestDeleted)}
        out = []
        for d in deletions:
            for m in d.message_ids:
                for (chat, message), pid in responds.items():
                    if message == m and chat in ((d.chat_id,) if d.chat_id else USERS) and pid not in told:
                        out.append(f"message {chat}/{m} deleted, #{pid} not told")
        return out

    async def _work_left(self) -> list[str]:
        js = self.nc.jetstream()
        for _ in range(20):  # acks trail the stored results a little
            info = await js.stream_info(subjects.WORK)
            if info.state.messages == 0:
                return []
            await asyncio.sleep(0.5)
        return [f"{info.state.messages} work messages never acked"]


def report(figures: Figures, limit: int = 10) -> str:
    lines = [figures.table()]
    for name, found in figures.violations.items():
        for text in found[:limit]:
            lines.append(f"  {name}: {text}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--promises", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--round-seconds", type=float, default=6.0)
    parser.add_argument("--keep", action="store_true", help="keep the NATS store and logs (prints where)")
    parser.add_argument("--net", action="store_true",
                        help="network faults between simulated hosts instead of kill -9 (root; tests/chaos/netrun.py)")
    args = parser.parse_args(argv)
    if args.keep:
        os.environ["VALOR_KEEP_NATS"] = "1"
    logging.getLogger("valor.bus").setLevel(logging.ERROR)  # our own connection's reconnect notices
    opts = Options(rounds=args.rounds, promises=args.promises, messages=args.messages, seed=args.seed,
                   round_seconds=args.round_seconds)
    print(f"chaos: {opts.rounds} rounds, {opts.promises} promises, {opts.messages} chat messages, seed {opts.seed}",
          flush=True)
    if args.net:
        from ..net.hosts import Unavailable
        from .netrun import NetChaos

        try:
            chaos = NetChaos(opts)
        except Unavailable as exc:
            print(f"chaos --net: SKIPPED, NOTHING RAN: {exc}", flush=True)
            return 0
    else:
        chaos = Chaos(opts)
    figures = asyncio.run(chaos.run())
    print(report(figures))
    if args.keep:
        print(f"logs and store: {Path(chaos.cluster.root)}")
    return 1 if figures.total_violations else 0


if __name__ == "__main__":
    sys.exit(main())
