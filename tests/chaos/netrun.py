"""``make chaos-net`` (or ``make chaos CHAOS_ARGS=--net``): the chaos suite with network faults between simulated hosts.

The way Jepsen tests NATS: every NATS node runs on its own host (a network
namespace, ``tests/net/hosts.py``), the schedulers next to nodes n1 and n2,
each executor on a host of its own (e1, e2); ingest, notifier and the harness
stay in the root namespace with the fake Telegram.  Each round feeds its share
of the workload and makes one fault, from shuffled cycles of ``NET_KINDS``,
held for longer than the scheduler's 5 s lease, then heals it:

- isolate the metadata leader (asked of the nodes' /jsz);
- split 1|2 (one node alone, cut from the other two; clients still reach both sides);
- isolate the host of the active scheduler (its NATS node goes with it);
- isolate an executor's host while it runs an attempt (its work is redelivered elsewhere);
- 5 % packet loss on every host's link, both ways;
- quorum loss: two of the three nodes isolated at once;
- and, once, all three nodes (and every service) down and back (kill -9).

Drops are iptables rules inside each host (silent, like a cut cable); delay
needs ``tc netem`` and is added to the cycle only where the kernel has it (the
table says so when it does not).  Afterwards the same judge as ``make chaos``
reads the log, plus one check the log cannot show: one active scheduler,
judged from both schedulers' /healthz asked every 0.1 s from inside their
hosts (``two_leaders``).  The table's notes give how long commands stored
under each fault waited for their promises to be created.  Needs root and ``ip netns``; elsewhere it exits 0 after saying
loudly why nothing ran.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections import Counter

from schemas import subjects
from schemas.events import Cancelled, Created, Failed, Started, Succeeded, decode_promise_event

from ..net.cluster import MONITOR_PORT, NetCluster, place
from ..net.hosts import Network, netem_available
from .run import Chaos, Options, log

NODES = ["n1", "n2", "n3"]
EXECUTOR_HOSTS = {"executor-1": "e1", "executor-2": "e2"}
PLACES = {"scheduler-1": "n1", "scheduler-2": "n2", **EXECUTOR_HOSTS}
NET_KINDS = ("isolate the metadata leader", "split 1|2", "isolate the active scheduler's host",
             "isolate an executor mid-attempt", "5% loss on every link", "quorum loss: 2 of 3 nodes isolated")
DELAY_KIND = "100 ms delay and 5% loss (netem)"
SCHEDULERS = ("scheduler-1", "scheduler-2")
HEALTH_PORT = 9100


def creation_figures(stored: dict[str, tuple[float, str]], created: dict[str, float]) -> list[str]:
    """Seconds from a command stored on COMMANDS (its publish acknowledged) to its promises created (seen
    passing), by the fault it was stored under: how long the scheduler side kept stored work waiting."""
    by_fault: dict[str, list[float]] = {}
    for request, (at, fault) in stored.items():
        if request in created:
            by_fault.setdefault(fault, []).append(max(0.0, created[request] - at))
    lines = []
    for fault, waits in sorted(by_fault.items()):
        waits.sort()
        p50, p99 = waits[len(waits) // 2], waits[min(len(waits) - 1, int(len(waits) * 0.99))]
        lines.append(f"stored -> created under {fault}: p50 {p50:.2f} s, p99 {p99:.2f} s, max {waits[-1]:.2f} s "
                     f"({len(waits)} requests)")
    unseen = len(stored) - sum(1 for r in stored if r in created)
    if unseen:
        lines.append(f"stored -> created: {unseen} requests' creation not seen as it passed (missed by the live subscription)")
    return lines


Sample = tuple[float, float, "bool | None"]  # (asked at, answered at, said it leads; None: no answer)


def leader_spans(said: list[Sample]) -> list[tuple[float, float]]:
    """When one scheduler surely led: from the answer to the first of a run of "leader" answers to the asking of
    the last (it said so no later than the one and no earlier than the other).  A run too short to be sure of
    (one answer, or answers slower than the gap) gives no span."""
    spans, start, last = [], None, None
    for asked, answered, leader in said:
        if leader:
            start = answered if start is None else start
            last = asked
        elif start is not None:
            spans.append((start, last))
            start = None
    if start is not None:
        spans.append((start, last))
    return [(a, b) for a, b in spans if a < b]


def two_leaders(said: dict[str, list[Sample]]) -> list[str]:
    """Times at which two schedulers surely both led (their spans overlap)."""
    found = []
    names = sorted(said)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for a0, a1 in leader_spans(said[a]):
                for b0, b1 in leader_spans(said[b]):
                    if a0 < b1 and b0 < a1:
                        found.append(f"{a} led {a0:.1f}-{a1:.1f} s and {b} {b0:.1f}-{b1:.1f} s (monotonic)")
    return found


class NetChaos(Chaos):
    def __init__(self, opts: Options, fault_seconds: tuple[float, float] = (6.0, 9.0),
                 kinds: list[str] | None = None) -> None:
        self.net = Network(NODES + list(EXECUTOR_HOSTS.values()), seed=opts.seed)
        try:
            super().__init__(opts, cluster=NetCluster(net=self.net))
        except BaseException:
            self.net.close()
            raise
        place(self.stack, self.net, PLACES)
        for name in SCHEDULERS:  # each in its own namespace: the same port on each host's loopback
            s = self.stack.services[name]
            s.env = dict(s.env, VALOR_METRICS_PORT=str(HEALTH_PORT))
        self.said_leader: dict[str, list[Sample]] = {name: [] for name in SCHEDULERS}
        self.sampling = True
        self.fault = "none"  # the fault made now, to group the figures
        self.stored: dict[str, tuple[float, str]] = {}  # request id -> (monotonic when stored, fault then)
        self.created: dict[str, float] = {}  # request id -> monotonic when its first promise was seen created
        self.fault_seconds = fault_seconds
        self.net_kinds = list(kinds or NET_KINDS)  # a test may ask for a few (in this order, then shuffled)
        self.cycle = list(reversed(self.net_kinds)) if kinds else []
        if not kinds and netem_available():
            self.net_kinds.append(DELAY_KIND)
        elif not kinds:
            self.figures.notes.append("no delay rounds: this kernel has no netem qdisc (tc qdisc ... netem fails); "
                                      "loss is made with iptables' statistic match instead")
        self.running: dict[str, set[int]] = {name: set() for name in EXECUTOR_HOSTS}  # executor -> promise ids
        self.mid_attempt = 0  # executor isolations that caught attempts running

    async def run(self):
        try:
            return await super().run()
        finally:
            self.figures.faults["  of which an executor cut with attempts running"] = self.mid_attempt
            self.sampling = False
            self.net.close()

    async def _rounds(self) -> None:
        self.watch = await self.nc.subscribe(subjects.ALL_PROMISE_EVENTS, cb=self._on_event)
        for name in SCHEDULERS:
            self.net[PLACES[name]].thread(self._sample, name)
        await super()._rounds()

    def _sample(self, name: str) -> None:
        """In the scheduler's host: ask it every 0.1 s whether it acts as the leader (None: no answer)."""
        while self.sampling:
            asked = time.monotonic()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{HEALTH_PORT}/healthz", timeout=0.5) as resp:
                    said = bool(json.load(resp).get("leader"))
            except urllib.error.HTTPError as exc:  # 503: not connected to NATS now; it still says what it is
                said = bool(json.loads(exc.read() or b"{}").get("leader"))
            except (OSError, ValueError):
                said = None
            self.said_leader[name].append((asked, time.monotonic(), said))
            time.sleep(0.1)

    async def _judge(self) -> None:
        self.sampling = False  # through the rounds and the drain
        await super()._judge()
        self.figures.violations["two active schedulers at once"] = two_leaders(self.said_leader)
        self.figures.notes += creation_figures(self.stored, self.created)
        samples = sum(1 for said in self.said_leader.values() for *_, v in said if v is not None)
        self.figures.notes.append(f"one active scheduler: judged from {samples} answers of the schedulers' "
                                  "/healthz, 0.1 s apart")

    async def _submit(self, plan) -> None:
        request_id = f"chaos-{self.round}-{len(self.requests)}"  # the id the base class gives it
        await super()._submit(plan)
        self.stored[request_id] = (time.monotonic(), self.fault)

    async def _on_event(self, msg) -> None:
        """What each executor runs now (to choose the moment to cut it), and when each request was created."""
        try:
            e = decode_promise_event(msg.data)
        except Exception:
            return
        if isinstance(e, Created) and e.request_id.startswith("chaos-"):
            self.created.setdefault(e.request_id, time.monotonic())  # may pass before the publish's ack
        if isinstance(e, Started) and e.executor in self.running:
            self.running[e.executor].add(e.id)
        elif isinstance(e, Succeeded | Failed | Cancelled):
            for ids in self.running.values():
                ids.discard(e.id)

    # --- the faults --------------------------------------------------------------------

    async def _break(self, r: int, full_stop: int, partition: int) -> None:
        await asyncio.sleep(self.rng.uniform(0.2, self.opts.round_seconds * 0.3))
        if r == full_stop:
            await self._full_stop()
            self.figures.faults["all three nodes down and back"] += 1
            return
        if not self.cycle:
            self.cycle = self.rng.sample(self.net_kinds, len(self.net_kinds))
        kind = self.cycle.pop()
        hold = self.rng.uniform(*self.fault_seconds)
        self.fault = kind
        what = await self._make(kind)
        log(self.opts, f"round {self.round}: {kind}: {what} for {hold:.1f} s")
        try:
            await asyncio.sleep(hold)
        finally:
            self.net.heal()
            self.fault = "none"  # what is stored from now on waits for the healing, not the fault
        await self._wait_cluster_current()
        self.figures.faults[kind] += 1

    async def _make(self, kind: str) -> str:
        net = self.net
        if kind == "isolate the metadata leader":
            leader = await asyncio.to_thread(self._meta_leader) or self.rng.choice(NODES)
            net.isolate(leader)
            return leader
        if kind == "split 1|2":
            alone = self.rng.choice(NODES)
            net.split([alone], [n for n in NODES if n != alone])
            return f"{alone} | {' '.join(n for n in NODES if n != alone)}"
        if kind == "isolate the active scheduler's host":
            host = PLACES[await self._active_scheduler()]
            net.isolate(host)
            return f"{host} (scheduler and NATS node)"
        if kind == "isolate an executor mid-attempt":
            name = await self._busy_executor()
            net.isolate(EXECUTOR_HOSTS[name])
            return f"{EXECUTOR_HOSTS[name]} ({name}, {len(self.running[name])} attempts running)"
        if kind == "5% loss on every link":
            for host in net.hosts:
                net.lossy(host, 0.05)
            return "all hosts"
        if kind == "quorum loss: 2 of 3 nodes isolated":
            two = self.rng.sample(NODES, 2)
            net.isolate(*two)
            return " ".join(two)
        if kind == DELAY_KIND:
            for host in net.hosts:
                net.delay(host, 100, loss=0.05)
            return "all hosts"
        raise ValueError(kind)

    async def _busy_executor(self) -> str:
        """An executor with attempts running now (waits up to 3 s for one; else either)."""
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            busy = [name for name, ids in self.running.items() if ids]
            if busy:
                self.mid_attempt += 1
                return self.rng.choice(busy)
            await asyncio.sleep(0.05)
        return self.rng.choice(list(EXECUTOR_HOSTS))

    def _meta_leader(self) -> str | None:
        """The JetStream metadata leader as the nodes report it (the most named, if they disagree)."""
        said = Counter()
        for node in self.cluster.nodes:
            try:
                with urllib.request.urlopen(f"http://{node.host.ip}:{MONITOR_PORT}/jsz", timeout=1) as resp:
                    leader = json.load(resp).get("meta_cluster", {}).get("leader")
                if leader:
                    said[leader] += 1
            except OSError:
                continue
        return said.most_common(1)[0][0] if said else None
