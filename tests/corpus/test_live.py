"""The corpus against the real services: Scheduler, Executor and Ingest (fake Telegram) on a real NATS.

Everything runs once per module, in batches (bytes on every consumed subject,
plans and shell tasks through the CLI path, Telegram messages through ingest),
with a valid input after every bad one.  After each batch a fresh promise must
still go through end to end.  The parametrized tests then read the outcome of
each case from what the batch observed: a DLQ record with its reason, a refused
request with its error, a recorded attempt error, or the promise a valid input
became.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field

import msgspec
import nats.errors
import pytest
import pytest_asyncio

from schemas import subjects
from schemas.commands import NewPromise, Submit
from schemas.events import AttemptFailed, MessageReceived, encode
from services.executor.worker import Executor
from services.ingest.service import Ingest
from services.scheduler.service import Scheduler
from valor import bus
from valor.client import CommandRefused, ValorClient
from valor.config import parse
from valor.natsserver import NatsCluster

from .cases import BUS, NEAR_LIMIT, OVERSIZED_TELEGRAM, REASON_PREFIX, SHELL_RUNS, TELEGRAM
from .test_pure import ALICE, GROUP, say, telegram_world

CONFIG = parse(f"""
[telegram]
allow_users = [{ALICE}]
allow_chats = [{GROUP}]
mention_names = ["valor"]
chat_interval = 0.0
""")

# Plans refused by the running scheduler; {failed}/{cancelled} are ids made at run time.
PLANS_LIVE = [
    ("live-cycle", [{"name": "a", "after": ["b"]}, {"name": "b", "after": ["a"]}], "the plan has a cycle: a -> b -> a"),
    ("live-self-cycle", [{"name": "a", "after": ["a"]}], "task 'a' is after itself"),
    ("live-unknown-dependency", [{"name": "x", "depends_on": [987654]}], "task 'x' depends on unknown promise #987654"),
    ("live-failed-dependency", [{"name": "x", "depends_on": ["{failed}"]}], "task 'x' depends on #{failed}, which failed"),
    ("live-cancelled-dependency", [{"name": "x", "depends_on": ["{cancelled}"]}],
     "task 'x' depends on #{cancelled}, which was cancelled"),
    ("live-unknown-type", [{"type": "rm -rf /"}], "task '#1' has unknown type 'rm -rf /'"),
    ("live-priority", [{"priority": 99}], "task '#1' has priority 99; use 1 (highest) to 9"),
    ("live-deep-cycle", [{"name": f"t{i}", "after": [f"t{(i - 1) % 1500}"]} for i in range(1500)],
     "the plan has a cycle: t0 -> t1499 -> t1498"),
    # fits in a command, but its `created` event (the input plus the promise's fields) would not
    ("live-oversized-input", [{"type": "echo", "input": "x" * (1024 * 1024 - 600)}], "the request is too big: promise #"),
]

OVER_LIMIT = [("chat-over-limit", "chat"), ("cmd-over-limit", "cmd"), ("work-over-limit", "work"),
              ("promise-over-limit", "promise")]


async def corpus_respond(ctx):
    return {"reply": f"read {len(ctx.input['text'])} characters"}


@dataclass
class Observed:
    dlq: dict[str, dict[str, str]] = field(default_factory=dict)  # case -> DLQ headers
    errors: dict[str, str] = field(default_factory=dict)  # case -> refused request / client error
    promises: dict[str, int] = field(default_factory=dict)  # case -> promise id it became
    valid: dict[str, int] = field(default_factory=dict)  # the valid input after case -> its promise
    liveness: list[tuple[str, str]] = field(default_factory=list)  # (after batch, end state)
    stored_chat: dict[str, MessageReceived | None] = field(default_factory=dict)
    state: object = None
    events: list = field(default_factory=list)
    seconds: float = 0.0


class Run:
    def __init__(self, nc, client: ValorClient) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.client = client
        self.seen = Observed()
        self.parked: dict[tuple[str, int], str] = {}  # (stream, seq) -> case
        self.pending_requests: dict[str, str] = {}  # valid request id -> case
        self.pending_messages: dict[tuple[int, int], str] = {}  # (chat, message) -> case

    # --- publishing ------------------------------------------------------------------

    def subject(self, kind: str, n: int) -> str:
        return {"chat": subjects.chat_in(10_000 + n), "cmd": subjects.command("submit"),
                "work": subjects.work("corpus"), "promise": subjects.promise(20_000 + n, "succeeded")}[kind]

    async def bad(self, case: str, kind: str, n: int, payload: bytes) -> None:
        ack = await self.js.publish(self.subject(kind, n), payload, headers={bus.MSG_ID: f"corpus:{case}"})
        self.parked[(ack.stream, ack.seq)] = case
        await self.valid(case, kind, n)

    async def valid(self, case: str, kind: str, n: int) -> None:
        """The good input right behind a bad one: it must not be lost."""
        if kind == "chat":
            chat = 10_000 + n
            msg = MessageReceived(chat_id=chat, message_id=1, sender_id=ALICE, text=f"valid after {case}")
            await self.js.publish(subjects.chat_in(chat), encode(msg), headers={bus.MSG_ID: f"tg:{chat}:1"})
            self.pending_messages[(chat, 1)] = case
        else:
            request = f"valid-{case}"
            queue = "corpus" if kind == "work" else None
            cmd = Submit(request_id=request, tasks=[NewPromise(type="echo", input=case, queue=queue)])
            await self.js.publish(subjects.command("submit"), encode(cmd), headers={bus.MSG_ID: request})
            self.pending_requests[request] = case

    # --- waiting and reading ---------------------------------------------------------------

    async def dead_letters(self) -> dict[tuple[str, int], dict[str, str]]:
        info = await self.js.stream_info(subjects.DLQ)
        out = {}
        for seq in range(info.state.first_seq or 1, info.state.last_seq + 1):
            raw = await self.js.get_msg(subjects.DLQ, seq)
            h = dict(raw.headers or {})
            h["subject"], h["size"] = raw.subject, str(len(raw.data or b""))
            out[(h.get(bus.ORIGIN_STREAM), int(h.get(bus.ORIGIN_SEQ, 0)))] = h
        return out

    async def settle(self, what: str, timeout: float = 40.0) -> None:
        """Until every bad input is dead-lettered and every promise has ended."""
        deadline = time.monotonic() + timeout
        while True:
            dlq = await self.dead_letters()
            state = await self.client.projection()
            missing = [c for key, c in self.parked.items() if key not in dlq]
            lost = [c for r, c in self.pending_requests.items() if r not in state.by_request]
            lost += [c for m, c in self.pending_messages.items() if m not in state.by_message]
            open_ = [p.id for p in state.promises.values() if not p.terminal]
            if not missing and not lost and not open_:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not dead-lettered {missing[:5]}, lost {lost[:5]}, open {open_[:5]}")
            await asyncio.sleep(0.2)
        for key, case in self.parked.items():
            self.seen.dlq[case] = dlq[key]
        for request, case in self.pending_requests.items():
            self.seen.valid[case] = state.by_request[request][0]
        for message, case in self.pending_messages.items():
            self.seen.valid[case] = state.by_message[message]

    async def still_alive(self, after: str) -> None:
        """A fresh promise and a fresh chat message both go through end to end."""
        ids = await self.client.submit(NewPromise(type="echo", input=f"alive after {after}"))
        chat = 30_000 + len(self.seen.liveness)
        msg = MessageReceived(chat_id=chat, message_id=1, sender_id=ALICE, text="still there?")
        await self.js.publish(subjects.chat_in(chat), encode(msg), headers={bus.MSG_ID: f"tg:{chat}:1"})
        deadline = time.monotonic() + 20
        while True:
            state = await self.client.projection()
            p = state.promises.get(ids["0"])
            r = state.promises.get(state.by_message.get((chat, 1), -1))
            if p and p.terminal and r and r.terminal:
                self.seen.liveness.append((after, f"{p.state}/{r.state}"))
                return
            assert time.monotonic() < deadline, f"no promise went through after {after}"
            await asyncio.sleep(0.1)


async def bus_batch(run: Run) -> None:
    for n, (case, kind, payload, _) in enumerate(BUS):
        await run.bad(case, kind, n, payload)
    limit = run.nc.max_payload
    for i, (case, kind, _) in enumerate(NEAR_LIMIT):
        await run.bad(case, kind, len(BUS) + i, b"\x01" + b"x" * (limit - 256))
    for i, (case, kind) in enumerate(OVER_LIMIT):
        try:
            await run.js.publish(run.subject(kind, 900 + i), b"x" * (limit + 1))
            run.seen.errors[case] = "stored"
        except nats.errors.MaxPayloadError as exc:
            run.seen.errors[case] = str(exc)
        await run.valid(case, kind, 900 + i)
    await run.settle("bus batch")


async def request_batch(run: Run) -> None:
    failed = (await run.client.submit(NewPromise(type="fail", input={"times": 1})))["0"]
    held = (await run.client.submit(NewPromise(type="sleep", input={"seconds": 60}, delay=3600)))["0"]
    await run.client.cancel(held, "corpus")
    while not (await run.client.promise(failed))[0].terminal:
        await asyncio.sleep(0.05)
    ids = {"failed": failed, "cancelled": held}

    def fill(value):
        if isinstance(value, str) and value.startswith("{"):
            return ids[value.strip("{}")]
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    for case, tasks, _ in PLANS_LIVE:
        try:
            await run.client.submit(*[msgspec.convert(fill(t), NewPromise) for t in tasks])
            run.seen.errors[case] = "accepted"
        except CommandRefused as exc:
            text = re.sub(rf"#{failed}\b", "#{failed}", str(exc))
            run.seen.errors[case] = re.sub(rf"#{held}\b", "#{cancelled}", text)
        await run.valid(case, "cmd", 0)
    for case, spec, _ in SHELL_RUNS:
        run.seen.promises[case] = (await run.client.submit(NewPromise(type="shell", input=spec)))["0"]
        await run.valid(case, "cmd", 0)
    await run.settle("request batch")


async def telegram_batch(run: Run, nc) -> None:
    world = telegram_world()
    ingest = Ingest(nc, world.inbound(), CONFIG)
    await ingest.start(reconcile_forever=False)
    try:
        sent = {}
        for case, who, text, media, _ in TELEGRAM:
            message = say(world, who, text, media)
            await world.deliver(world._event(message))
            sent[case] = message
            valid = say(world, "alice", f"valid after {case}", None)
            await world.deliver(world._event(valid))
            run.pending_messages[(ALICE, valid.id)] = case
        for case, text in OVERSIZED_TELEGRAM:
            message = say(world, "alice", text, None)
            await world.deliver(world._event(message))
            sent[case] = message
        await run.settle("telegram batch")
        state = await run.client.projection()
        for case, message in sent.items():
            pid = state.by_message.get((message.chat_id, message.id))
            run.seen.promises[case] = pid
            run.seen.stored_chat[case] = None if pid is None else msgspec.convert(
                state.promises[pid].spec.input, MessageReceived)
    finally:
        await ingest.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def observed():
    began = time.monotonic()
    cluster = NatsCluster(size=1).start()
    nc = await bus.connect(cluster.url, name="corpus")
    await bus.ensure_streams(nc.jetstream(), 1)
    scheduler = Scheduler(nc, config=CONFIG, ack_wait=5)
    executor = Executor(nc, ["default", "respond", "corpus"], slots=16, handlers={"respond": corpus_respond},
                        executor_id="corpus-exec", ack_wait=5)
    await executor.start()
    await scheduler.start()
    run = Run(nc, ValorClient(nc))
    try:
        while not scheduler.leader:
            await asyncio.sleep(0.05)
        await bus_batch(run)
        await run.still_alive("bus batch")
        await request_batch(run)
        await run.still_alive("request batch")
        await telegram_batch(run, nc)
        await run.still_alive("telegram batch")
        run.seen.state = await run.client.projection()
        run.seen.events = [e for _, e in await run.client.events()]
        run.seen.seconds = time.monotonic() - began
        yield run.seen
    finally:
        await scheduler.stop()
        await executor.stop(grace=1)
        await nc.close()
        cluster.cleanup()


def ids(table):
    return [row[0] for row in table]


# --- what each case ended in ----------------------------------------------------------------


@pytest.mark.parametrize("case, kind, payload, reason", BUS, ids=ids(BUS))
def test_bad_bytes_on_a_consumed_subject_end_in_the_dlq_with_their_reason(observed, case, kind, payload, reason):
    record = observed.dlq[case]
    assert record[bus.REASON] == REASON_PREFIX[kind] + reason or record[bus.REASON].startswith(
        REASON_PREFIX[kind] + reason), record[bus.REASON]
    assert record["subject"] == {"chat": "dlq.chat", "cmd": "dlq.command", "work": "dlq.work",
                                 "promise": "dlq.promise"}[kind]
    assert int(record["size"]) == len(payload)  # the copy is whole
    assert observed.state.promises[observed.valid[case]].state == "succeeded"  # the valid one behind it


@pytest.mark.parametrize("case, kind, reason", NEAR_LIMIT, ids=ids(NEAR_LIMIT))
def test_a_payload_near_the_size_limit_is_dead_lettered_cut_to_fit(observed, case, kind, reason):
    record = observed.dlq[case]
    assert record[bus.REASON].startswith(reason), record[bus.REASON]
    assert int(record[bus.TRUNCATED]) > int(record["size"]) > 900_000
    assert observed.state.promises[observed.valid[case]].state == "succeeded"


@pytest.mark.parametrize("case, kind", OVER_LIMIT, ids=ids(OVER_LIMIT))
def test_a_payload_over_the_size_limit_is_refused_by_the_client(observed, case, kind):
    assert observed.errors[case] == "nats: maximum payload exceeded"
    assert observed.state.promises[observed.valid[case]].state == "succeeded"


@pytest.mark.parametrize("case, tasks, error", PLANS_LIVE, ids=ids(PLANS_LIVE))
def test_a_bad_plan_is_refused_by_the_running_scheduler(observed, case, tasks, error):
    assert observed.errors[case].startswith(error), observed.errors[case]
    assert observed.state.promises[observed.valid[case]].state == "succeeded"


@pytest.mark.parametrize("case, spec, expected", SHELL_RUNS, ids=ids(SHELL_RUNS))
def test_shell_input_runs_without_a_shell_or_fails_saying_why(observed, case, spec, expected):
    p = observed.state.promises[observed.promises[case]]
    outcome, text = expected
    assert p.state == outcome, (p.state, p.error)
    if outcome == "succeeded":
        assert p.result["stdout_tail"] == text
    else:
        errors = [e.error for e in observed.events if isinstance(e, AttemptFailed) and e.id == p.id]
        assert errors and errors[0].startswith(text), errors
        assert p.attempt == 1  # refused for good, not retried
    assert observed.state.promises[observed.valid[case]].state == "succeeded"


@pytest.mark.parametrize("case, who, text, media, expected", TELEGRAM, ids=ids(TELEGRAM))
def test_odd_telegram_messages_get_exactly_one_respond_promise_or_none(observed, case, who, text, media, expected):
    kind, detail = expected
    pid = observed.promises[case]
    if kind == "refused":
        assert pid is None
    else:
        p = observed.state.promises[pid]
        assert p.spec.task == "respond" and p.state == "succeeded", (p.state, p.error)
        assert observed.stored_chat[case].text == detail
        assert p.result["reply"] == f"read {len(detail)} characters"
    assert observed.state.promises[observed.valid[case]].state == "succeeded"


@pytest.mark.parametrize("case, text", OVERSIZED_TELEGRAM, ids=ids(OVERSIZED_TELEGRAM))
def test_a_telegram_message_too_big_for_nats_is_stored_cut_and_answered(observed, case, text):
    p = observed.state.promises[observed.promises[case]]
    assert p.state == "succeeded"
    assert observed.stored_chat[case].text.endswith(f"[cut: the message had {len(text)} characters]")


def test_no_consumer_died_or_stalled_and_each_message_has_one_respond_promise(observed):
    assert observed.liveness == [("bus batch", "succeeded/succeeded"), ("request batch", "succeeded/succeeded"),
                                 ("telegram batch", "succeeded/succeeded")]
    responds = [(p.spec.chat_id, p.spec.message_id) for p in observed.state.promises.values() if p.spec.task == "respond"]
    assert len(responds) == len(set(responds))
    assert all(p.terminal for p in observed.state.promises.values())


def test_the_corpus_is_big_and_quick(observed):
    from .cases import ARGV, CONFIG, PLANS
    total = sum(map(len, (BUS, NEAR_LIMIT, OVER_LIMIT, PLANS_LIVE, SHELL_RUNS, TELEGRAM, OVERSIZED_TELEGRAM,
                          ARGV, CONFIG, PLANS)))
    assert total >= 200
    assert observed.seconds < 60, f"the live corpus took {observed.seconds:.1f}s"

