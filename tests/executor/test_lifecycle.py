"""Capacity, liveness, redelivery, cancellation and heartbeats of a running executor."""

import asyncio
import os
from pathlib import Path

import pytest
from nats.js.errors import KeyDeletedError, KeyNotFoundError

from schemas import subjects
from schemas.commands import WorkItem, heartbeat_decoder
from schemas.events import Cancelled, Progress, Started, Succeeded
from services.executor.consumer import ensure_consumer
from valor import bus

from .helpers import last, names, put_work, story


async def test_slots_bound_concurrent_attempts(js, executor):
    running, peak = 0, 0

    async def busy(ctx):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.2)
        running -= 1

    ex = await executor(queues=("default", "other"), slots=2, handlers={"busy": busy})
    for i in range(1, 7):
        await put_work(js, WorkItem(id=i, attempt=1, task="busy"), queue="default" if i % 2 else "other")
    await ex.run_until_idle()
    assert peak == 2
    for i in range(1, 7):
        assert await last(js, i, "succeeded") is not None


async def test_a_queue_s_own_slots_are_never_taken_by_another_queue_s_work(js, executor):
    release = asyncio.Event()

    async def hold(ctx):
        await release.wait()

    ex = await executor(queues=("default", "respond"), slots="respond=1,default=2",
                        handlers={"hold": hold}, executor_id="exec-own")
    for i in range(1, 5):  # more background work than its slots
        await put_work(js, WorkItem(id=i, attempt=1, task="hold"))
    await until(lambda: ex.busy == 2)
    await put_work(js, WorkItem(id=9, attempt=1, task="echo", input="reply"), queue="respond")
    await until(lambda: last(js, 9, "succeeded"))  # while every background slot is held
    kv = await js.key_value(subjects.EXECUTORS_BUCKET)

    async def announced():  # a heartbeat sent after the reply's slot was given back (one before still counts it)
        hb = heartbeat_decoder.decode((await kv.get("exec-own")).value)
        return hb if hb.busy == 2 and all(p.busy == 0 for p in hb.pools if p.queues == ["respond"]) else None

    hb = await until(announced)
    assert [(p.queues, p.slots, p.busy) for p in hb.pools] == [(["respond"], 1, 0), (["default"], 2, 2)]
    assert (hb.queues, hb.slots, hb.busy) == (["respond", "default"], 3, 2)  # the totals, for older readers
    release.set()
    await ex.run_until_idle()
    for i in range(1, 5):
        assert await last(js, i, "succeeded") is not None


async def until(check, timeout: float = 10.0):
    """``check()``'s first truthy value (it may be async); the bound is generous, the loop returns at once."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, "never happened"
        await asyncio.sleep(0.02)


async def test_heartbeat_announces_queues_and_slots(js, executor):
    ex = await executor(queues=("default", "respond"), slots=3, executor_id="exec-a_1")
    kv = await js.key_value(subjects.EXECUTORS_BUCKET)
    entry = await kv.get("exec-a_1")
    hb = heartbeat_decoder.decode(entry.value)
    assert (hb.executor, hb.queues, hb.slots, hb.busy, hb.pid) == ("exec-a_1", ["default", "respond"], 3, 0, os.getpid())
    await ex.stop()
    with pytest.raises((KeyDeletedError, KeyNotFoundError)):
        await kv.get("exec-a_1")


def test_executor_ids_must_be_valid_kv_keys(nc):
    from services.executor.worker import Executor

    with pytest.raises(ValueError, match="invalid executor id 'a.b'"):
        Executor(nc, ["default"], 1, executor_id="a.b")


async def _deliver_once_and_abandon(js, item: WorkItem) -> None:
    """Play an executor that took the work and crashed: the message comes back with delivery 2."""
    await ensure_consumer(js, "default", 30.0)
    await put_work(js, item)
    sub = await js.pull_subscribe_bind(durable="exec-default", stream=subjects.WORK)
    (msg,) = await sub.fetch(1, timeout=2)
    await msg.nak()
    await sub.unsubscribe()


async def test_redelivered_work_of_a_finished_promise_is_skipped(js, executor):
    await _deliver_once_and_abandon(js, WorkItem(id=1, attempt=1, task="noop"))
    await bus.publish_event(js, Succeeded(id=1, attempt=1, result="earlier"), "1:succeeded:1")
    ex = await executor()
    await ex.run_until_idle()
    assert names(await story(js, 1)) == ["succeeded"]
    assert (await js.stream_info(subjects.WORK)).state.messages == 0


async def test_redelivered_unfinished_attempt_runs_again(js, executor):
    await _deliver_once_and_abandon(js, WorkItem(id=1, attempt=1, task="echo", input=1))
    ex = await executor()
    await ex.run_until_idle()
    started, succeeded = await story(js, 1)
    assert isinstance(started, Started) and started.delivery == 2
    assert succeeded.result == {"input": 1, "deps": {}}


async def test_long_attempt_is_kept_alive_with_in_progress(js, executor):
    ex = await executor(ack_wait=0.6, handlers={"long": lambda ctx: asyncio.sleep(1.5, "done")})
    await put_work(js, WorkItem(id=1, attempt=1, task="long"))
    await ex.run_until_idle()
    events = await story(js, 1)
    assert names(events) == ["started", "succeeded"]
    info = await js.consumer_info(subjects.WORK, "exec-default")
    assert info.num_redelivered == 0


def _live_members(pgid: int) -> dict[int, str]:
    """Processes of the group that are still alive, with their command names (zombies do not count)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, _, tail = stat.read_text().rpartition(")")
        except OSError:
            continue
        fields = tail.split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            found[int(stat.parent.name)] = head.partition("(")[2]
    return found


async def test_cancel_stops_a_running_shell_and_leaves_no_process(js, executor, monkeypatch):
    monkeypatch.setenv("VALOR_SHELL_ALLOW", "python3")
    ex = await executor()
    script = "import subprocess, time; subprocess.Popen(['sleep', '30']); time.sleep(30)"
    await put_work(js, WorkItem(id=1, attempt=1, task="shell", input={"argv": ["python3", "-c", script]}))
    while (progress := await last(js, 1, "progress")) is None:
        await asyncio.sleep(0.05)
    pid = int(progress.text.rsplit("pid ", 1)[1].rstrip(")"))
    # Until the grandchild runs: counting members is not enough, as `python3` may be a
    # launcher (pyenv's shim) whose own short-lived helpers join the group first.
    deadline = asyncio.get_running_loop().time() + 20
    while "sleep" not in _live_members(pid).values():
        assert asyncio.get_running_loop().time() < deadline, _live_members(pid)
        await asyncio.sleep(0.05)
    await bus.publish_event(js, Cancelled(id=1, reason="user asked", by="test"), "1:cancelled")
    await ex.run_until_idle()
    assert _live_members(pid) == {}
    assert names(await story(js, 1)) == ["started", "progress", "cancelled"]
    assert (await js.stream_info(subjects.WORK)).state.messages == 0


async def test_work_of_a_promise_cancelled_before_it_ran_is_acked_without_running(js, executor):
    await bus.publish_event(js, Cancelled(id=1, reason="changed my mind"), "1:cancelled")
    await put_work(js, WorkItem(id=1, attempt=1, task="noop"))
    ex = await executor()
    await ex.run_until_idle()
    assert names(await story(js, 1)) == ["cancelled"]


async def test_an_attempt_never_starts_after_its_promise_was_cancelled(js, executor):
    from services.executor.cancellations import CLOCK_MARGIN

    """The cancel lands between the executor's check and its `started`: the log refuses the write."""
    ex = await executor()
    # Work queued while the executor listens is trusted to have no cancel it missed; this one
    # slips past it (as a cancel landing after the check would), so only the log can say no.
    await ex._cancel_sub.unsubscribe()
    await asyncio.sleep(CLOCK_MARGIN + 0.2)  # so the work counts as queued while it listened
    await bus.publish_event(js, Cancelled(id=1, reason="too late to start"), "1:cancelled")
    finished = []

    async def work(ctx):  # runs while `started` is being stored, and is stopped when it is refused
        await asyncio.sleep(1)
        finished.append(ctx.id)

    ex.handlers["work"] = work
    await put_work(js, WorkItem(id=1, attempt=1, task="work"))
    await ex.run_until_idle()
    assert names(await story(js, 1)) == ["cancelled"] and finished == []
    assert (await js.stream_info(subjects.WORK)).state.messages == 0


async def test_a_result_that_comes_after_the_cancel_is_not_recorded(js, executor):
    release = asyncio.Event()

    async def slow(ctx):
        await release.wait()
        return "done"

    ex = await executor(handlers={"slow": slow})
    await ex._cancel_sub.unsubscribe()  # deaf to cancels: only the log can say no
    await put_work(js, WorkItem(id=1, attempt=1, task="slow"))
    while await last(js, 1, "started") is None:
        await asyncio.sleep(0.05)
    await bus.publish_event(js, Cancelled(id=1, reason="changed my mind"), "1:cancelled")
    release.set()
    await ex.run_until_idle()
    assert names(await story(js, 1)) == ["started", "cancelled"]
    assert (await js.stream_info(subjects.WORK)).state.messages == 0


async def test_stop_hands_back_an_attempt_that_outlives_the_grace(js, executor):
    ex = await executor(handlers={"forever": lambda ctx: asyncio.sleep(60)})
    await put_work(js, WorkItem(id=1, attempt=1, task="forever"))
    while await last(js, 1, "started") is None:
        await asyncio.sleep(0.05)
    await ex.stop(grace=0.2)
    assert names(await story(js, 1)) == ["started"]  # shutting down is not a failure
    info = await js.consumer_info(subjects.WORK, "exec-default")
    assert info.num_ack_pending + info.num_pending == 1  # back in line for another executor
    other = await executor(handlers={"forever": lambda ctx: asyncio.sleep(0.1, "finished")})
    await other.run_until_idle()
    started = [e for e in await story(js, 1) if isinstance(e, Started)]
    assert [s.delivery for s in started] == [1, 2]
    assert (await last(js, 1, "succeeded")).result == "finished"
    assert not [e for e in await story(js, 1) if isinstance(e, Progress)]
