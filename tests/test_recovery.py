"""Recovery: kill -9 of any service, loss of a NATS node, a full stop and start.

Each test runs a workload of chains, joins and retries through real processes,
breaks something mid-way, and checks the log alone: every promise finished and
each result recorded once.
"""

from __future__ import annotations

import asyncio
import time

import nats.errors
import pytest

from schemas import subjects
from schemas.commands import NewPromise as T
from schemas.events import Created, Dispatched, MessageReceived, ScheduleCreated, TicksSkipped, encode
from valor import bus
from valor.client import ValorClient
from valor.natsserver import NatsCluster
from valor.stack import Stack

from .invariants import violations

pytestmark = pytest.mark.timeout(180)


def workload(n_groups: int, seconds: float = 0.3) -> list[list[T]]:
    """Groups of: a chain of 3, a fan-out of 3 joined by 1, a task that fails once."""
    plans = []
    for _ in range(n_groups):
        sleep = {"seconds": seconds}
        plans.append([
            T(name="setup", type="sleep", input=sleep), T(name="write", type="echo", after=["setup"]),
            T(name="run", type="sleep", input=sleep, after=["write"]),
            T(name="r1", type="sleep", input=sleep), T(name="r2", type="sleep", input=sleep),
            T(name="r3", type="sleep", input=sleep), T(name="summary", type="echo", after=["r1", "r2", "r3"]),
            T(name="flaky", type="fail", input={"times": 1}, retries=2, backoff=0.2),
        ])
    return plans


async def submit_all(client: ValorClient, plans) -> list[int]:
    ids = []
    for plan in plans:
        ids += list((await client.submit(*plan, timeout=30)).values())
    return ids


async def finish_and_check(nats_url: str, ids: list[int], stack: Stack, timeout: float = 90, **connect):
    """``connect``: bus.connect's options for a cluster with TLS and users (tests/net/test_several_hosts.py)."""
    nc = await bus.connect(nats_url, name="check", **connect)
    try:
        client = ValorClient(nc)
        try:
            states = await client.wait(ids, timeout=timeout, poll=0.5)
        except TimeoutError as exc:
            state = await client.projection()
            stuck = [p for p in state.promises.values() if not p.terminal]
            detail = "\n".join(f"#{p.id} {p.status} attempt={p.attempt} pending_deps={p.pending_deps}" for p in stuck)
            raise AssertionError(f"{exc}\n{detail}\n{stack.logs()}") from None
        assert set(states.values()) == {"succeeded"}, states
        events = await client.events()
        assert violations(events) == []
    finally:
        await nc.close()


@pytest.fixture
def single():
    cluster = NatsCluster(size=1).start()
    yield cluster
    cluster.cleanup()


@pytest.fixture
def cluster3():
    cluster = NatsCluster(size=3).start()
    yield cluster
    cluster.cleanup()


async def started_stack(cluster, **kw) -> tuple[Stack, object, ValorClient]:
    stack = Stack(cluster, **kw).start()
    nc = await bus.connect(cluster.url, name="test")
    # Wait until the streams exist and an executor announced itself.
    for _ in range(200):
        try:
            kv = await nc.jetstream().key_value("valor_executors")
            if await kv.keys():
                break
        except Exception:
            pass
        await asyncio.sleep(0.1)
    return stack, nc, ValorClient(nc)


async def test_scheduler_killed_mid_workload_loses_nothing(single):
    stack, nc, client = await started_stack(single)
    try:
        ids = await submit_all(client, workload(4))
        for _ in range(2):
            await asyncio.sleep(0.7)
            leader = await active_scheduler(nc, stack)
            stack.services[leader].kill()
            stack.services[leader].start()  # the supervisor restarts it; the standby took over
        await finish_and_check(single.url, ids, stack)
    finally:
        await nc.close()
        stack.kill()


async def test_executor_killed_mid_attempt_is_redelivered_and_finishes(single):
    stack, nc, client = await started_stack(single)
    try:
        ids = await submit_all(client, workload(3, seconds=1.0))
        await asyncio.sleep(1.0)
        stack.services["executor-1"].kill()
        await asyncio.sleep(1.0)
        stack.services["executor-1"].start()
        stack.services["executor-2"].kill()
        stack.services["executor-2"].start()
        await finish_and_check(single.url, ids, stack)
    finally:
        await nc.close()
        stack.kill()


async def test_losing_one_nats_node_of_three_loses_nothing(cluster3):
    stack, nc, client = await started_stack(cluster3)
    try:
        ids = await submit_all(client, workload(3))
        await asyncio.sleep(0.5)
        cluster3.nodes[0].kill()
        more = await submit_all(client, workload(1))
        await finish_and_check(cluster3.nodes[1].url, ids + more, stack)
    finally:
        await nc.close()
        stack.kill()


async def test_full_stop_and_start_mid_workload_finishes_everything(single):
    stack, nc, client = await started_stack(single)
    ids = await submit_all(client, workload(3, seconds=0.5))
    await asyncio.sleep(0.8)
    await nc.close()
    stack.stop()
    single.stop()
    time.sleep(0.5)
    single.start()
    stack.start()
    try:
        await finish_and_check(single.url, ids, stack)
    finally:
        stack.kill()


async def test_a_plan_awaiting_approval_survives_kill_9_of_the_leader_and_a_full_restart_then_runs_approved(
        single, tmp_path):
    config = tmp_path / "valor.toml"
    config.write_text("[approval]\nmax_steps = 2\n")
    stack, nc, client = await started_stack(single, env_extra={"VALOR_CONFIG": str(config)})
    plan = "/plan\nsetup: echo: env\nwrite: echo: tests [after setup]\nrun: echo: go [after write]"
    message = MessageReceived(chat_id=9, message_id=1, sender_name="Ana", text=plan, at=time.time())
    await nc.jetstream().publish(subjects.chat_in(9), encode(message), headers={bus.MSG_ID: "tg:9:1"})
    try:
        ids = await until_held(client, 3)
        leader = await active_scheduler(nc, stack)
        stack.services[leader].kill()
        stack.services[leader].start()
        await active_scheduler(nc, stack)  # the standby (or the restarted one) leads
        await nc.close()
        stack.stop()
        single.stop()
        time.sleep(0.5)
        single.start()
        stack.start()
        nc = await bus.connect(single.url, name="test")
        client = ValorClient(nc)
        # A promise submitted now runs: the new leader has decided since, and held the plan back.
        marker = await submit_all(client, [[T(name="marker", type="echo")]])
        assert await client.wait(marker, timeout=60) == {marker[0]: "succeeded"}
        state = await client.projection()
        assert {state.promises[pid].state for pid in ids} == {"awaiting_approval"}
        assert not [e for _, e in await client.events() if isinstance(e, Dispatched) and e.id in ids]

        assert sorted((await client.approve(ids[0], "approved by the operator")).values()) == ids
        await finish_and_check(single.url, ids + marker, stack)
    finally:
        await nc.close()
        stack.kill()


async def until_held(client: ValorClient, n: int, timeout: float = 60.0) -> list[int]:
    """The ids of the chat's plan once its ``n`` steps exist, all awaiting approval."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = await client.projection()
        except (TimeoutError, nats.errors.Error):
            state = None
        held = sorted(p.id for p in state.promises.values() if p.state == "awaiting_approval") if state else []
        if len(held) == n:
            return held
        assert time.monotonic() < deadline, f"the plan never waited for approval: {held}"
        await asyncio.sleep(0.2)


async def active_scheduler(nc, stack: Stack) -> str:
    """The stack name (scheduler-N) of the process holding the lease."""
    kv = await nc.jetstream().key_value("valor_scheduler")
    holder = None
    for _ in range(200):  # after a kill, the lease passes on once it expires
        try:
            holder = (await kv.get("leader")).value.decode()  # scheduler-<host>-<pid>-<nonce>
        except Exception:
            await asyncio.sleep(0.1)
            continue
        pid = int(holder.split("-")[-2])
        for name, s in stack.services.items():
            if s.alive and s.proc.pid == pid:
                return name
        await asyncio.sleep(0.1)
    raise AssertionError(f"no live scheduler holds the lease ({holder})")


async def test_a_schedule_from_a_chat_survives_a_full_stop_and_start_and_fires_once_per_tick(single, tmp_path):
    """Every 2 s from a chat; all services and NATS stopped and started again: the schedule goes on, no tick
    ran twice, and every tick from the first run to the last either ran or was skipped on the record."""
    config = tmp_path / "valor.toml"
    config.write_text("[schedules]\nmin_interval = 1\n")  # the operator lowers the chat's floor for a 2 s schedule
    stack, nc, client = await started_stack(single, env_extra={"VALOR_CONFIG": str(config)})
    message = MessageReceived(chat_id=9, message_id=1, sender_name="Ana", text="/every 2s echo tick", at=time.time())
    await nc.jetstream().publish(subjects.chat_in(9), encode(message), headers={bus.MSG_ID: "tg:9:1"})
    try:
        await until_runs(client, 2)
        await nc.close()
        stack.stop()
        single.stop()
        time.sleep(0.5)
        single.start()
        stack.start()
        restarted = time.time()
        nc = await bus.connect(single.url, name="test")
        client = ValorClient(nc)
        await until_runs(client, 2, after=restarted)  # it keeps firing
        events = [e for _, e in await client.events()]
        [sched] = [e for e in events if isinstance(e, ScheduleCreated)]
        assert (sched.chat_id, sched.message_id, sched.every) == (9, 1, 2.0)
        runs = [e for e in events if isinstance(e, Created) and e.schedule_id == sched.id]
        ticks = [e.tick for e in runs]
        assert len(set(ticks)) == len(ticks)  # one promise per tick
        skipped = [sched.anchor + k * 2.0 for e in events if isinstance(e, TicksSkipped)
                   for k in range(int((e.first - sched.anchor) / 2), int((e.last - sched.anchor) / 2) + 1)]
        assert not set(skipped) & set(ticks)  # a tick either ran or was skipped
        assert sorted(ticks + skipped) == [sched.anchor + k * 2.0 for k in range(1, len(ticks) + len(skipped) + 1)]
        assert {(e.chat_id, e.message_id) for e in runs} == {(9, 1)}  # every run answers the message that asked
    finally:
        await nc.close()
        stack.kill()


async def until_runs(client: ValorClient, n: int, after: float = 0.0, timeout: float = 60.0) -> list:
    """The schedule's runs, once the first ``n`` of those whose tick is past ``after`` succeeded."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = await client.projection()
        except (TimeoutError, nats.errors.Error):
            state = None
        runs = sorted((p for p in state.promises.values() if p.spec.schedule_id is not None and p.spec.tick > after),
                      key=lambda p: p.id) if state else []
        if len(runs) >= n and all(p.state == "succeeded" for p in runs[:n]):
            return runs
        assert time.monotonic() < deadline, f"{len(runs)} runs of {n}"
        await asyncio.sleep(0.2)
