"""A scheduler restarts from its snapshot plus the tail, or from the whole log when the snapshot is no good."""

import asyncio
import logging
import time

import pytest

from schemas import subjects
from schemas.commands import NewPromise
from schemas.events import Created, Started, Succeeded
from services.scheduler import snapshot
from services.scheduler.service import Scheduler
from valor import bus, objstore
from valor.client import ValorClient

from ..test_recovery import finish_and_check, started_stack, submit_all, workload
from .conftest import gone
from .test_service import announce, finish, take_work
from .test_snapshot import everything

BUCKET = subjects.SNAPSHOTS_BUCKET


async def until(check, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def caught_up(s: Scheduler, js) -> None:
    last = (await js.stream_info(subjects.PROMISES)).state.last_seq
    await until(lambda: s.state.last_seq >= last, f"{s.name} at seq {last}")


async def some_history(nc, js) -> None:
    """Promises done, running, waiting for a slot and waiting for a parent."""
    await announce(js, slots=2)
    await ValorClient(nc).submit(NewPromise(name="a"), NewPromise(name="b"), NewPromise(name="c"),
                                 NewPromise(name="d", after=["b"]))
    first, second = await take_work(js, n=2)
    await finish(js, first, {"done": first.id})
    await bus.publish_event(js, Started(at=time.time(), id=second.id, attempt=1, executor="e"), "s")


async def equals_the_whole_log(s: Scheduler, nc, timeout: float = 10.0) -> None:
    """The scheduler's projection is the fold of the whole log (looked at again while a leader still acts)."""
    deadline = time.monotonic() + timeout
    while (mine := everything(s.state)) != (whole := everything(await ValorClient(nc).projection())):
        assert time.monotonic() < deadline, (mine, whole)
        await asyncio.sleep(0.1)


def logged(caplog, start: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(start)]


async def test_a_restarted_scheduler_loads_its_snapshot_and_replays_only_the_tail(nc, js, caplog, started):
    caplog.set_level(logging.INFO, logger="valor.scheduler")
    leader = await started(snapshot_every=1, snapshot_interval=0)
    await until(lambda: leader.leader, "the lease")
    await some_history(nc, js)
    await caught_up(leader, js)
    await until(lambda: leader.snapshots.seq == leader.state.last_seq, "a snapshot of the whole history")
    taken = leader.snapshots.seq
    # After the snapshot: a new promise, and the running one finishes.
    await bus.publish_event(js, Created(at=time.time(), id=50, title="after the snapshot"), "50:created",
                            expect_new_subject=True)
    running = next(p for p in leader.state.promises.values() if p.status == "running")
    await bus.publish_event(js, Succeeded(at=time.time(), id=running.id, attempt=1, result="late"), "late")

    standby = await started(snapshot_every=0)  # standbys start from the snapshot too
    await caught_up(standby, js)
    await equals_the_whole_log(standby, nc)
    [line] = logged(caplog, "projection snapshot loaded")
    assert line.startswith(f"projection snapshot loaded: seq {taken}, 4 promises, ")
    assert line.endswith(f"; replaying from seq {taken + 1}")

    await gone(leader)
    await until(lambda: standby.leader, "the standby taking over", timeout=10)
    await announce(js, slots=10)
    handed_out = {item.id for item in await take_work(js, n=3)}
    assert handed_out == {3, 4, 50}  # what the snapshot held and what came after it
    await standby.stop()


async def test_a_tail_restarted_before_its_first_event_resumes_after_the_snapshot(nc, js, started):
    leader = await started(snapshot_every=0)
    await until(lambda: leader.leader, "the lease")
    await some_history(nc, js)
    await caught_up(leader, js)
    await leader.snapshots.store(leader.state)
    standby = await started(snapshot_every=0)
    ignored = standby.state.ignored
    jsi = standby._tail._sub._jsi
    await jsi.reset_ordered_consumer(jsi._sseq + 1)  # what nats-py does after a reconnect or missed heartbeats
    await bus.publish_event(js, Created(at=time.time(), id=50, title="after"), "50:created", expect_new_subject=True)
    await caught_up(standby, js)
    await equals_the_whole_log(standby, nc)
    assert standby.state.ignored == ignored  # the log before the snapshot was not delivered again


@pytest.mark.parametrize("damage, warning", [
    (lambda data: b"not a snapshot", "SnapshotError: no header line: not a Valor snapshot"),
    (lambda data: data.replace(snapshot.FOLD.encode(), b"0123456789abcdef", 1),
     f"SnapshotError: written by another version of the fold (0123456789abcdef, this one is {snapshot.FOLD})"),
    (lambda data: data[:-20], "SnapshotError: unreadable body: "),
], ids=["garbage", "another fold", "cut short"])
async def test_a_snapshot_that_cannot_be_used_means_a_full_replay(nc, js, caplog, started, damage, warning):
    caplog.set_level(logging.INFO, logger="valor.scheduler")
    first = await started(snapshot_every=0)
    await until(lambda: first.leader, "the lease")
    await some_history(nc, js)
    await caught_up(first, js)
    await first.snapshots.store(first.state)
    await gone(first)
    await objstore.put(js, BUCKET, snapshot.NAME, damage(await objstore.get(js, BUCKET, snapshot.NAME)))

    s = await started(snapshot_every=0)
    await caught_up(s, js)
    [line] = logged(caplog, "projection snapshot unusable")
    assert line.startswith(f"projection snapshot unusable ({warning}") and line.endswith("; replaying the whole log")
    await equals_the_whole_log(s, nc)
    await until(lambda: s.leader, "the lease")
    ids = await ValorClient(nc).submit(NewPromise(title="served after a full replay"))
    assert ids["0"] == 5


async def test_a_snapshot_of_a_log_that_was_recreated_is_ignored(nc, js, caplog, started):
    caplog.set_level(logging.INFO, logger="valor.scheduler")
    first = await started()
    await until(lambda: first.leader, "the lease")
    await some_history(nc, js)
    await caught_up(first, js)
    await first.snapshots.store(first.state)
    await gone(first)
    await js.delete_stream(subjects.PROMISES)
    await bus.ensure_streams(js, 1)
    await bus.publish_event(js, Created(at=time.time(), id=1, title="a new log"), "1:created", expect_new_subject=True)

    s = await started(snapshot_every=0)
    await caught_up(s, js)
    [line] = logged(caplog, "projection snapshot ignored")
    assert line.startswith("projection snapshot ignored: it folded a stream created at ")
    assert list(s.state.promises) == [1]
    await equals_the_whole_log(s, nc)
    await s.stop()


@pytest.mark.timeout(180)
async def test_a_scheduler_killed_after_a_snapshot_restarts_from_it_and_loses_nothing(nats_server):
    stack, nc, client = await started_stack(nats_server, schedulers=1, executors=2, env_extra={
        "VALOR_SNAPSHOT_EVERY": "1", "VALOR_SNAPSHOT_INTERVAL": "0"})
    try:
        ids = await submit_all(client, workload(3))
        js = nc.jetstream()
        deadline = time.monotonic() + 30
        while await objstore.info(js, BUCKET, snapshot.NAME) is None:
            assert time.monotonic() < deadline, stack.logs()
            await asyncio.sleep(0.2)
        stack.restart("scheduler-1")  # kill -9 mid-workload, then start again
        await finish_and_check(nats_server.url, ids, stack)
        log = stack.services["scheduler-1"].log.read_text()
        assert "projection snapshot loaded: seq " in log, log[-3000:]
    finally:
        await nc.close()
        stack.kill()
