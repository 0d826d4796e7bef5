"""Plans awaiting approval against a real nats-server and real schedulers; the test plays the executor.

The held state is in the log, so it survives a restart (from a snapshot or the
whole log) and a leader failover; expiry is decided by whichever scheduler
leads when its time comes, with time as an input (an injected clock).
"""

import asyncio
import time

import pytest

from schemas import subjects
from schemas.events import Dispatched, MessageReceived, encode
from valor import bus
from valor.client import CommandRefused, ValorClient
from valor.config import parse

from .conftest import gone
from .test_service import announce, finish, take_work
from .test_snapshot_restart import caught_up, until

RULES = parse('[approval]\ntypes = ["code"]\nexpire_after = 600\n')
PLAN = {"reply": "Planned.", "promises": [{"name": "write", "type": "code", "input": "change it"},
                                          {"name": "check", "type": "echo", "after": ["write"]}]}


async def held_plan(nc, js, message_id: int = 1) -> dict[str, int]:
    """A chat message whose answer plans code work: the plan's ids once it exists."""
    msg = MessageReceived(chat_id=5, message_id=message_id, text="change the code, then check", at=time.time())
    await js.publish(subjects.chat_in(5), encode(msg), headers={bus.MSG_ID: f"tg:5:{message_id}"})
    [respond] = await take_work(js, queue="respond")
    await finish(js, respond, PLAN)
    state = await eventually(nc, lambda s: s.promises[respond.id].children, "the plan spawned")
    return state.promises[respond.id].children


async def eventually(nc, ok, what: str, timeout: float = 15.0):
    """The log's projection once ``ok`` holds for it."""
    deadline = time.monotonic() + timeout
    while not ok(state := await ValorClient(nc).projection()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
    return state


async def states(nc, ids: dict[str, int]) -> dict[str, str]:
    state = await ValorClient(nc).projection()
    return {name: state.promises[pid].state for name, pid in ids.items()}


async def never_dispatched(nc, ids: dict[str, int]) -> None:
    events = await ValorClient(nc).events()
    assert not [e for _, e in events if isinstance(e, Dispatched) and e.id in ids.values()]


async def test_a_held_plan_runs_only_once_approved_from_the_cli(nc, js, started):
    leader = await started(config=RULES)
    await until(lambda: leader.leader, "the lease")
    await announce(js, queues=("default", "respond", "code"))
    ids = await held_plan(nc, js)
    await leader.drain()  # every event folded, and a decision round since found nothing to hand out
    assert await states(nc, ids) == {"write": "awaiting_approval", "check": "awaiting_approval"}
    await never_dispatched(nc, ids)

    assert await ValorClient(nc).approve(ids["check"], "approved by the operator") == ids
    [write] = await take_work(js, queue="code")
    assert write.id == ids["write"]
    await finish(js, write, "changed")
    [check] = await take_work(js)
    assert check.id == ids["check"] and check.deps == {str(ids["write"]): "changed"}
    with pytest.raises(CommandRefused, match=f"#{ids['write']} is not awaiting approval"):
        await ValorClient(nc).approve(ids["write"])


async def test_a_rejected_plan_ends_cancelled_naming_the_refusal(nc, js, started):
    leader = await started(config=RULES)
    await until(lambda: leader.leader, "the lease")
    await announce(js, queues=("default", "respond", "code"))
    ids = await held_plan(nc, js)
    assert await ValorClient(nc).reject(ids["write"], "plan rejected by the operator: not today") == ids
    state = await ValorClient(nc).projection()
    for pid in ids.values():
        assert (state.promises[pid].state, state.promises[pid].error) == (
            "cancelled", "plan rejected by the operator: not today")
    await leader.drain()
    await never_dispatched(nc, ids)


@pytest.mark.parametrize("snapshot_every", [1, 0], ids=["from its snapshot", "from the whole log"])
async def test_a_plan_still_awaits_approval_after_a_scheduler_restart_and_runs_when_approved(
        nc, js, started, snapshot_every):
    first = await started(config=RULES, snapshot_every=snapshot_every, snapshot_interval=0)
    await until(lambda: first.leader, "the lease")
    await announce(js, queues=("default", "respond", "code"))
    ids = await held_plan(nc, js)
    await caught_up(first, js)
    if snapshot_every:
        await until(lambda: first.snapshots.seq == first.state.last_seq, "a snapshot holding the plan")
    await gone(first)

    second = await started(config=RULES, snapshot_every=0)
    await until(lambda: second.leader, "the lease")
    assert list(second.state.awaiting) == [(second.state.promises[pid].spec.approve_by, pid) for pid in ids.values()]
    await second.drain()
    assert await states(nc, ids) == {"write": "awaiting_approval", "check": "awaiting_approval"}
    await never_dispatched(nc, ids)

    await ValorClient(nc).approve(ids["write"])
    [write] = await take_work(js, queue="code")
    assert write.id == ids["write"]


async def test_after_a_leader_failover_the_plan_still_waits_and_the_new_leader_expires_it(nc, js, started):
    offset = [0.0]

    def clock() -> float:
        return time.time() + offset[0]

    first = await started(config=RULES, name="first", clock=clock)
    await until(lambda: first.leader, "the lease")
    second = await started(config=RULES, name="second", clock=clock)
    await announce(js, queues=("default", "respond", "code"))
    ids = await held_plan(nc, js)
    await caught_up(second, js)

    # The leader dies without giving the lease back: the standby takes over once it expires.
    for task in first._tasks:
        task.cancel()
    await first._step_down()
    first.lease.revision = None
    await until(lambda: second.leader, "the standby taking over", timeout=10)
    await second.drain()
    assert await states(nc, ids) == {"write": "awaiting_approval", "check": "awaiting_approval"}
    await never_dispatched(nc, ids)

    offset[0] = 600.0  # nobody answered within expire_after
    state = await eventually(nc, lambda s: all(s.promises[pid].terminal for pid in ids.values()), "the expiry")
    for pid in ids.values():
        p = state.promises[pid]
        assert (p.state, p.error, p.cancelled_by) == (
            "cancelled", "not approved within 10m; nothing of the plan ran", "scheduler")
    await never_dispatched(nc, ids)
