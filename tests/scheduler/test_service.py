"""The scheduler process against a real nats-server; the test plays the executor."""

import asyncio
import time

import msgspec
import pytest

from schemas import subjects
from schemas.commands import ExecutorHeartbeat, NewPromise, Submit, reply_decoder, work_decoder
from schemas.events import MessageReceived, Started, Succeeded, encode
from schemas.streams import bucket_configs
from services.scheduler.effects import Dispatch
from services.scheduler.lease import REQUEST_TIMEOUT, RETRY_AFTER
from services.scheduler.service import RESEND_EVERY, Scheduler
from valor import bus
from valor.client import CommandRefused, ValorClient


async def announce(js, queues=("default", "respond"), slots=4, name="test-exec"):
    kv = await js.key_value(subjects.EXECUTORS_BUCKET)
    hb = ExecutorHeartbeat(executor=name, queues=list(queues), slots=slots, at=time.time())
    await kv.put(name, encode(hb))


async def take_work(js, queue="default", n=1, timeout=5.0):
    sub = await js.pull_subscribe(subjects.work(queue), durable=f"exec-{queue}", stream=subjects.WORK)
    items = []
    deadline = time.monotonic() + timeout
    while len(items) < n and time.monotonic() < deadline:
        try:
            msgs = await sub.fetch(n - len(items), timeout=1)
        except TimeoutError:
            continue
        for m in msgs:
            items.append(work_decoder.decode(m.data))
            await m.ack()
    await sub.unsubscribe()
    return items


async def finish(js, item, result=None):
    await bus.publish_event(js, Started(at=time.time(), id=item.id, attempt=item.attempt), f"{item.id}:s:{item.attempt}")
    await bus.publish_event(js, Succeeded(at=time.time(), id=item.id, attempt=item.attempt, result=result),
                            f"{item.id}:ok:{item.attempt}")


@pytest.fixture
async def scheduler(nc):
    s = Scheduler(nc, lease_ttl=1.0)
    await s.start()
    await s.drain()  # leading, and nothing to do yet
    yield s
    await s.stop()


async def test_submitted_promise_is_dispatched_to_its_queue(nc, js, scheduler):
    await announce(js)
    ids = await ValorClient(nc).submit(NewPromise(title="hello", type="echo", input={"x": 1}))
    [item] = await take_work(js)
    assert item.id == ids["0"] and item.input == {"x": 1} and item.task == "echo"


async def test_join_receives_both_parent_results_through_the_log(nc, js, scheduler):
    await announce(js)
    client = ValorClient(nc)
    ids = await client.submit(NewPromise(name="a"), NewPromise(name="b"), NewPromise(name="join", after=["a", "b"]))
    parents = await take_work(js, n=2)
    for item in parents:
        await finish(js, item, f"result-{item.id}")
    [join] = await take_work(js)
    assert join.id == ids["join"]
    assert join.deps == {str(ids["a"]): f"result-{ids['a']}", str(ids["b"]): f"result-{ids['b']}"}


async def test_plan_with_a_cycle_is_refused_and_creates_nothing(nc, js, scheduler):
    client = ValorClient(nc)
    with pytest.raises(CommandRefused, match="cycle: a -> b -> a"):
        await client.submit(NewPromise(name="a", after=["b"]), NewPromise(name="b", after=["a"]))
    assert (await js.stream_info(subjects.PROMISES)).state.messages == 0


async def test_each_message_becomes_exactly_one_respond_promise(nc, js, scheduler):
    msg = MessageReceived(chat_id=42, message_id=7, sender_id=1, text="hi", at=time.time())
    # The same message twice: once live, once re-read by catch-up under another id.
    await js.publish(subjects.chat_in(42), encode(msg), headers={bus.MSG_ID: "tg:42:7"})
    await js.publish(subjects.chat_in(42), encode(msg), headers={bus.MSG_ID: "tg:42:7:again"})
    await scheduler.drain()  # both handled: the second waited a round (same message) and found its promise
    state = await ValorClient(nc).projection()
    responds = [p for p in state.promises.values() if p.spec.task == "respond"]
    assert len(responds) == 1 and responds[0].spec.chat_id == 42 and responds[0].spec.message_id == 7


async def test_respond_result_spawns_children_with_their_dependencies(nc, js, scheduler):
    await announce(js)
    msg = MessageReceived(chat_id=5, message_id=1, text="set up, write, run", at=time.time())
    await js.publish(subjects.chat_in(5), encode(msg), headers={bus.MSG_ID: "tg:5:1"})
    [respond] = await take_work(js, queue="respond")
    plan = {"reply": "on it", "promises": [
        {"name": "setup", "type": "echo"}, {"name": "write", "type": "echo", "after": ["setup"]}]}
    await finish(js, respond, plan)
    [setup] = await take_work(js)
    state = await ValorClient(nc).projection()
    parent = state.promises[respond.id]
    assert parent.children == {"setup": setup.id, "write": setup.id + 1}
    write = state.promises[setup.id + 1]
    assert write.spec.depends_on == [setup.id] and write.spec.parent_id == respond.id and write.spec.chat_id == 5


async def test_standby_takes_over_when_the_leader_vanishes(nc, js):
    await js.delete_key_value(subjects.LEASE_BUCKET)
    [lease] = [c for c in bucket_configs(lease_ttl=1.0) if c.bucket == subjects.LEASE_BUCKET]
    await js.create_key_value(lease)
    first, second = Scheduler(nc, lease_ttl=1.0, name="first"), Scheduler(nc, lease_ttl=1.0, name="second")
    await first.start()
    await first.drain()  # leading before the second starts
    await second.start()
    await asyncio.sleep(0.3)
    assert first.leader and not second.leader
    # Simulate a crash: the first stops renewing without releasing its lease.
    for task in first._tasks:
        task.cancel()
    await first._step_down()
    first.lease.revision = None
    t0 = time.monotonic()
    while not second.leader and time.monotonic() - t0 < 5:
        await asyncio.sleep(0.05)
    assert second.leader
    await announce(js)
    ids = await ValorClient(nc).submit(NewPromise(title="after failover"))
    [item] = await take_work(js)
    assert item.id == ids["0"]
    await second.stop()


async def test_a_lease_renewal_that_fails_for_a_moment_keeps_the_leader_serving(nc, js, scheduler):
    await announce(js)
    real, calls = scheduler.lease.renew, []

    async def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise TimeoutError("nats: timeout")  # a node went away for a moment
        return await real()

    scheduler.lease.renew = flaky
    while len(calls) < 2:
        await asyncio.sleep(0.1)
    assert scheduler.leader
    ids = await ValorClient(nc).submit(NewPromise(title="still served"))
    [item] = await take_work(js)
    assert item.id == ids["0"]


async def test_a_lease_renewal_that_hangs_steps_the_leader_down_before_the_lease_could_have_run_out(nc, js):
    """Its node cut off without quorum, a renewal waits out its own timeout (5 s), longer than the lease: the
    leader must stop acting within its safe share of the TTL after its last renewal was sent anyway, for a
    standby may hold the lease after the TTL (seen as two schedulers leading at once in make chaos-net)."""
    await js.delete_key_value(subjects.LEASE_BUCKET)  # a 2 s lease, so the test waits 2 s, not the shipped 10
    [lease] = [c for c in bucket_configs(lease_ttl=2.0) if c.bucket == subjects.LEASE_BUCKET]
    await js.create_key_value(lease)
    scheduler = Scheduler(nc, lease_ttl=2.0)
    await scheduler.start()
    await scheduler.drain()
    try:
        assert scheduler.leader
        hung: list[float] = []

        async def hangs(*args, **kwargs):
            hung.append(time.monotonic())
            await asyncio.Event().wait()

        scheduler.lease.kv.update = hangs  # the KV write under the renewal: its cap is what is tested
        stepped: list[float] = []
        real_step_down = scheduler._step_down

        async def step_down() -> None:
            stepped.append(time.monotonic())
            await real_step_down()

        scheduler._step_down = step_down
        while scheduler.leader:
            await asyncio.sleep(0.01)
        stopped_acting = time.monotonic()  # every round asks `leader` before it acts
        # The last renewal that succeeded was sent before the first one that hung.
        assert hung and stopped_acting - hung[0] < scheduler.lease_ttl
        # The renewing task tears down the pulls at its next turn, once the renewal under way is cut at its cap
        # (and may then take the lease again: it is free).
        turn = REQUEST_TIMEOUT + RETRY_AFTER
        for _ in range(500):
            if stepped:
                break
            await asyncio.sleep(0.01)
        assert stepped and stepped[0] - stopped_acting < turn + 0.5, (stepped, stopped_acting)
    finally:
        await scheduler.stop()


async def test_a_take_over_cut_short_by_nats_gives_the_lease_back_and_is_tried_again(nc, js):
    """The lease was won but NATS failed the take-over (a node away): the lease must not
    stay held with no COMMANDS or CHAT being pulled, or nothing is ever created again."""
    await js.delete_key_value(subjects.LEASE_BUCKET)
    [lease] = [c for c in bucket_configs(lease_ttl=1.0) if c.bucket == subjects.LEASE_BUCKET]
    await js.create_key_value(lease)
    await announce(js)
    s = Scheduler(nc, lease_ttl=1.0)
    real, calls = s._take_over, []

    async def cut_short():
        calls.append(1)
        if len(calls) == 1:
            raise TimeoutError("nats: timeout")  # stream_info of PROMISES while a node restarts
        await real()

    s._take_over = cut_short
    await s.start()
    try:
        ids = await ValorClient(nc).submit(NewPromise(title="created after all"), timeout=15)
        [item] = await take_work(js)
        assert item.id == ids["0"] and len(calls) == 2
    finally:
        await s.stop()


async def test_work_lost_after_dispatched_was_stored_is_sent_again(nc, js, scheduler):
    """NATS refused the work item after `dispatched` was stored: the attempt is not stuck."""
    await announce(js)
    real_publish_async, refused = scheduler.js.publish_async, []

    async def refuse_work_once(subject, *args, **kwargs):
        if subject.startswith("work.") and not refused:
            refused.append(subject)
            raise TimeoutError("nats: timeout")
        return await real_publish_async(subject, *args, **kwargs)

    scheduler.js.publish_async = refuse_work_once
    ids = await ValorClient(nc).submit(NewPromise(title="not lost"))
    [item] = await take_work(js, timeout=10)
    assert refused and item.id == ids["0"]


async def test_a_command_that_does_not_decode_is_answered_with_the_reason(nc, js, scheduler):
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, max_msgs=1)
    bad = {"type": "submit", "request_id": "r-bad", "reply_to": inbox, "tasks": "not a list"}
    await js.publish(subjects.command("submit"), msgspec.json.encode(bad), headers={bus.MSG_ID: "r-bad"})
    reply = reply_decoder.decode((await sub.next_msg(timeout=5)).data)
    assert not reply.ok and reply.error.startswith("undecodable command: Expected `array`, got `str`")
    dead = await js.get_last_msg(subjects.DLQ, "dlq.command")
    assert dead.headers[bus.REASON] == reply.error


async def leading(s: Scheduler) -> Scheduler:
    await s.start()
    for _ in range(100):
        if s.leader:
            return s
        await asyncio.sleep(0.05)
    raise AssertionError(f"{s.name} never led")


async def test_a_continuation_s_session_is_recorded_once_and_kept_across_a_scheduler_restart(nc, js):
    first = await leading(Scheduler(nc, lease_ttl=1.0, name="first"))
    await announce(js, queues=("code",))
    client = ValorClient(nc)
    ids = await client.submit(NewPromise(title="fix it", type="code", input="fix it"))
    [run] = await take_work(js, queue="code")
    with pytest.raises(CommandRefused, match=f"#{run.id} is still queued; it can be continued once it has ended"):
        await client.submit(NewPromise(type="code", input="too early", continues=run.id))
    await finish(js, run, {"text": "fixed", "session_id": "session-1"})
    more = await client.submit(NewPromise(title="more", type="code", input="add a test", continues=ids["0"]))
    await first.stop()

    second = await leading(Scheduler(nc, lease_ttl=1.0, name="second"))
    try:
        spec = second.state.promises[more["0"]].spec
        assert (spec.continues, spec.resume_session) == (ids["0"], "session-1")
        [item] = await take_work(js, queue="code")
        assert (item.id, item.resume_session) == (more["0"], "session-1")
    finally:
        await second.stop()


async def test_drain_returns_once_every_stored_command_is_handled_and_decided_on(nc, js, scheduler):
    await announce(js, slots=4)
    for i in range(6):  # stored without waiting for answers: nothing but drain says when they are done
        cmd = Submit(request_id=f"r{i}", tasks=[NewPromise(type="echo")])
        await js.publish(subjects.command("submit"), encode(cmd), headers={bus.MSG_ID: f"r{i}"})
    await scheduler.drain()
    assert len(scheduler.state.promises) == 6
    assert sorted(p.attempt for p in scheduler.state.promises.values()) == [0, 0, 1, 1, 1, 1]  # 4 slots
    assert (await js.stream_info(subjects.COMMANDS)).state.messages == 0
    assert scheduler.state.last_seq == (await js.stream_info(subjects.PROMISES)).state.last_seq
    assert await scheduler.busy() is None


async def test_work_not_started_is_resent_when_the_schedulers_own_monotonic_clock_says_so(nc, js):
    """The resend interval is read on the injected clock: a test moves it, no wall time passes."""
    mono = [1000.0]
    s = Scheduler(nc, lease_ttl=1.0, monotonic=lambda: mono[0])
    await s.start()
    s.lease.clock = time.monotonic  # the lease keeps real time: moving the clock must not make a new leader resend
    try:
        await s.drain()
        await announce(js)
        ids = await ValorClient(nc).submit(NewPromise(type="echo"))
        [item] = await take_work(js)  # dispatched, taken, never started
        await s.drain()
        resent = []
        perform = s.perform

        async def watched(effects):
            resent.extend(e.item.id for e in effects if isinstance(e, Dispatch))
            await perform(effects)

        s.perform = watched
        s._wake.set()
        await s.drain()
        assert resent == []  # not due on the scheduler's clock
        mono[0] += RESEND_EVERY
        s._wake.set()
        async with asyncio.timeout(10):
            while not resent:
                await asyncio.sleep(0.02)
        assert resent == [item.id] == [ids["0"]]
    finally:
        await s.stop()
