"""The engine end to end in one process: real NATS, the real scheduler and executor."""

import asyncio
import time

import pytest

from schemas import subjects
from schemas.commands import NewPromise as T
from schemas.events import Created, MessageReceived, RetryScheduled, encode
from services.executor.worker import Executor
from services.scheduler.service import Scheduler
from valor import bus
from valor.client import ValorClient

from .invariants import violations


async def plan_from_message(ctx):
    """A respond handler registered by the test: it promises a three-step chain."""
    text = ctx.input["text"]
    return {
        "reply": f"I'll do that: {text}",
        "promises": [
            {"name": "setup", "type": "echo", "input": "env"},
            {"name": "write", "type": "echo", "input": "tests", "after": ["setup"]},
            {"name": "run", "type": "echo", "input": "run", "after": ["write"]},
        ],
    }


@pytest.fixture
async def engine(nc):
    scheduler = Scheduler(nc)
    executor = Executor(nc, ["default", "respond"], slots=4, handlers={"respond": plan_from_message},
                        executor_id="test-exec", ack_wait=5)
    await executor.start()
    await scheduler.start()
    yield ValorClient(nc)
    await scheduler.stop()
    await executor.stop(grace=1)


async def test_echo_promise_succeeds_with_its_input(engine):
    ids = await engine.submit(T(title="hello", type="echo", input={"x": 1}))
    assert await engine.wait([ids["0"]], timeout=10) == {ids["0"]: "succeeded"}
    p, events = await engine.promise(ids["0"])
    assert p.result == {"input": {"x": 1}, "deps": {}}
    assert [type(e).__name__ for e in events] == ["Created", "Dispatched", "Started", "Succeeded"]


async def test_fail_task_succeeds_on_attempt_three_after_two_growing_retries(engine):
    ids = await engine.submit(T(title="t", type="fail", input={"times": 2}, retries=3, backoff=0.2))
    assert await engine.wait([ids["0"]], timeout=15) == {ids["0"]: "succeeded"}
    p, events = await engine.promise(ids["0"])
    retries = [e for e in events if isinstance(e, RetryScheduled)]
    assert p.attempt == 3 and [r.next_attempt for r in retries] == [2, 3]
    assert retries[0].delay < retries[1].delay


async def test_message_becomes_one_respond_promise_whose_plan_runs_as_a_chain(nc, js, engine):
    msg = MessageReceived(chat_id=9, message_id=100, sender_id=1, text="set up, write, run", at=time.time())
    await js.publish(subjects.chat_in(9), encode(msg), headers={bus.MSG_ID: "tg:9:100"})
    for _ in range(100):
        state = await engine.projection()
        respond = [p for p in state.promises.values() if p.spec.task == "respond"]
        if respond and respond[0].children:
            break
        await asyncio.sleep(0.1)
    [respond] = respond
    children = respond.children
    assert set(children) == {"setup", "write", "run"}
    assert await engine.wait(list(children.values()), timeout=10) == {i: "succeeded" for i in children.values()}
    state = await engine.projection()
    run = state.promises[children["run"]]
    assert run.result["deps"] == {str(children["write"]): state.promises[children["write"]].result}
    assert run.spec.chat_id == 9 and run.spec.parent_id == respond.id
    assert violations(await engine.events()) == []


async def test_cancelling_a_running_promise_stops_it_and_cancels_dependents(engine):
    ids = await engine.submit(T(name="long", type="sleep", input={"seconds": 30}),
                              T(name="after", type="echo", after=["long"]))
    for _ in range(100):
        p, _ = await engine.promise(ids["long"])
        if p.state == "running":
            break
        await asyncio.sleep(0.05)
    t0 = time.monotonic()
    await engine.cancel(ids["long"], "no longer needed")
    assert await engine.wait(list(ids.values()), timeout=5) == {ids["long"]: "cancelled", ids["after"]: "cancelled"}
    after, _ = await engine.promise(ids["after"])
    assert after.error == f"dependency #{ids['long']} was cancelled: no longer needed"
    assert time.monotonic() - t0 < 5


async def test_two_schedulers_that_both_think_they_lead_never_share_an_id(nc, js):
    """The lease can be wrong for a moment; the created-subject guard cannot."""
    a, b = Scheduler(nc, name="a"), Scheduler(nc, name="b")
    for s in (a, b):
        await s.start()
    try:
        await asyncio.sleep(0.5)
        # Force the split brain: both act as leader with the same view of the log.
        follower = b if a.leader else a
        [lease_task] = [t for t in follower._tasks if t.get_name() == "lease"]
        lease_task.cancel()  # it will never learn that it is not the leader
        # a lease it believes renewed just now, and long (decision 65: `held` counts from the renewal)
        follower.lease.revision, follower.lease.sent_at, follower.lease.ttl = 1, follower.monotonic(), 3600.0
        await follower._take_over()
        assert a.leader and b.leader
        client = ValorClient(nc)
        results = await asyncio.gather(*[client.submit(T(title=f"p{i}")) for i in range(20)], return_exceptions=True)
        assert all(not isinstance(r, Exception) for r in results), results
        created = [e for _, e in await client.events() if isinstance(e, Created)]
        assert len({e.id for e in created}) == len(created) == 20
    finally:
        for s in (a, b):
            await s.stop()


async def test_a_burst_of_commands_and_messages_gets_distinct_ids_and_each_request_once(nc, js):
    """Waiting inputs are taken many per round: ids are allocated across the batch, and a
    request that repeats within it (a client's retry) is answered once, not twice."""
    from schemas.commands import Submit

    for i in range(40):
        cmd = Submit(request_id=f"burst-{i}", tasks=[T(name="a", type="echo"), T(name="b", type="echo", after=["a"])])
        await js.publish(subjects.command("submit"), encode(cmd), headers={bus.MSG_ID: f"burst-{i}"})
    again = Submit(request_id="burst-7", tasks=[T(name="a", type="echo"), T(name="b", type="echo", after=["a"])])
    await js.publish(subjects.command("submit"), encode(again), headers={bus.MSG_ID: "burst-7-retry"})
    for m in range(20):
        msg = MessageReceived(chat_id=5, message_id=m + 1, sender_id=1, text="hi", at=time.time())
        await js.publish(subjects.chat_in(5), encode(msg), headers={bus.MSG_ID: f"tg:5:{m + 1}"})
    scheduler = Scheduler(nc)
    await scheduler.start()
    try:
        client = ValorClient(nc)
        for _ in range(100):
            state = await client.projection()
            if len(state.by_request) >= 40 + 20 and len(state.by_message) == 20:
                break
            await asyncio.sleep(0.1)
        created = [e for _, e in await client.events() if isinstance(e, Created)]
        assert sorted(e.id for e in created) == list(range(1, 40 * 2 + 20 + 1))
        assert sum(1 for e in created if e.request_id == "burst-7") == 2
        b = state.promises[state.by_request["burst-7"][1]]
        assert b.spec.depends_on == [state.by_request["burst-7"][0]]
    finally:
        await scheduler.stop()


async def test_a_join_whose_inputs_are_too_big_to_carry_fails_saying_why(engine):
    half = "x" * 600_000  # each parent's result fits a message; both together do not
    a = (await engine.submit(T(type="echo", input=half)))["0"]
    b = (await engine.submit(T(type="echo", input=half)))["0"]
    ids = await engine.submit(T(name="join", type="echo", depends_on=[a, b]), T(name="other", type="echo"))
    states = await engine.wait([a, b, *ids.values()], timeout=20)
    assert states == {a: "succeeded", b: "succeeded", ids["join"]: "failed", ids["other"]: "succeeded"}
    join, _ = await engine.promise(ids["join"])
    assert "the work item is" in join.error and "NATS carries at most" in join.error
    after = await engine.submit(T(title="still served", type="echo"))  # nothing is stuck behind it
    assert await engine.wait([after["0"]], timeout=10) == {after["0"]: "succeeded"}
