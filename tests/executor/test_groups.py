"""Task process groups recorded for the next executor on this host (services/executor/groups.py).

The decisions first, with plain values; then real process groups (``sleep`` in a
session of its own) recorded, stopped, and found by an executor before an attempt.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from schemas.commands import WorkItem
from services.executor import groups
from services.executor.groups import Proc, Record
from tests.claude.conftest import group_members
from tests.executor.helpers import names, put_work, story

ROOT = Path(__file__).resolve().parents[2]


def record(**fields) -> Record:
    values = dict(pgid=100, leader_start=5000, promise=7, attempt=2, workspace="/w", owner=40, owner_start=10,
                  host="h", boot="b1")
    return Record(**{**values, **fields})


def proc(pid: int, start: int, pgid: int = 100, sid: int = 100, state: str = "S") -> Proc:
    return Proc(pid=pid, state=state, pgid=pgid, sid=sid, start=start)


# -- decisions ------------------------------------------------------------------------------------


def test_a_stat_line_is_read_after_the_last_parenthesis_of_the_command_name():
    line = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 " + " ".join(["0"] * 12) + " 987654 " + "0 " * 30
    assert groups.parse_stat(4242, line) == Proc(pid=4242, state="S", pgid=4242, sid=4242, start=987654)


def test_the_members_of_a_recorded_group_are_its_live_processes_in_its_session():
    procs = [proc(100, 5000), proc(101, 5003), proc(102, 5004, state="Z"), proc(103, 5005, pgid=300, sid=300),
             proc(104, 4000, pgid=1, sid=1)]
    assert groups.members(record(), procs) == [100, 101]


def test_a_group_whose_leader_pid_now_names_another_program_has_no_members():
    # pid 100 was reused: whatever runs as 100 now is not the recorded leader, however it looks.
    assert groups.members(record(), [proc(100, 9000), proc(101, 9001)]) == []


def test_a_group_whose_leader_died_is_what_is_left_of_it():
    assert groups.members(record(), [proc(101, 5003), proc(102, 6000)]) == [101, 102]
    assert groups.members(record(), [proc(101, 5003, state="Z")]) == []
    assert groups.members(record(), []) == []


def test_an_owner_is_alive_only_as_the_process_that_wrote_the_record():
    table = {40: proc(40, 10, pgid=40, sid=40)}
    assert groups.owner_alive(record(), table.get)
    assert not groups.owner_alive(record(owner_start=11), table.get)  # pid reused by another program
    assert not groups.owner_alive(record(owner=41), table.get)  # gone
    assert not groups.owner_alive(record(), {40: proc(40, 10, state="Z")}.get)  # killed, not yet reaped


def test_a_record_means_something_only_on_its_host_and_boot():
    assert groups.placed(record(), "h", "b1") == "here"
    assert groups.placed(record(), "h", "b2") == "gone"
    assert groups.placed(record(), "other", "b1") == "elsewhere"


def test_a_record_reads_back_as_written_and_a_bad_file_is_refused_saying_why():
    assert Record.decode(record().encode()) == record()
    assert record().name == "7-2-100-5000.json"
    for bad, reason in ((b"{", "not a task group record: "), (b'{"pgid": 1}', "missing"),
                        (record(pgid="100").encode(), "pgid is '100'"),
                        (record(workspace=3).encode(), "workspace is 3")):
        with pytest.raises(ValueError, match=reason):
            Record.decode(bad)


# -- real process groups --------------------------------------------------------------------------


def start_group(*argv: str) -> subprocess.Popen:
    """A program in a session of its own, as the handlers start theirs."""
    return subprocess.Popen(list(argv) or ["sleep", "60"], start_new_session=True, stdin=subprocess.DEVNULL)


def until(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        assert time.monotonic() < deadline, f"no {what} after {timeout}s"
        time.sleep(0.02)
    return found


def recorded(process: subprocess.Popen, directory: Path, promise: int = 7, attempt: int = 1,
             owner: Proc | None = None) -> tuple[Record, Path]:
    """Record ``process``'s group as an executor would (owner: this test, unless given)."""
    rec = groups.record_of(process.pid, promise, attempt, "/w")
    assert rec is not None
    if owner is not None:
        rec = Record(**{**rec.__dict__, "owner": owner.pid, "owner_start": owner.start})
    return rec, groups.write(rec, directory)


@pytest.fixture
def reap():
    """Kill and reap what a test started, whatever happened to it."""
    started: list[subprocess.Popen] = []
    yield started.append
    for process in started:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def test_stop_ends_the_group_with_sigterm_and_forgets_it(run_dir, reap):
    leader = start_group("sh", "-c", "sleep 60 & wait")
    reap(leader)
    rec, path = recorded(leader, run_dir)
    running = until(lambda: len(found := group_members(leader.pid)) == 2 and sorted(found), what="child of the leader")
    assert groups.stop(rec, path) == running
    assert leader.wait(5) == -signal.SIGTERM
    until(lambda: group_members(leader.pid) == [], what="end of the group")
    assert not path.exists()


def test_a_group_that_ignores_sigterm_is_killed_after_the_wait(run_dir, reap):
    leader = start_group("sh", "-c", "trap '' TERM; sleep 60 & wait")  # the ignored TERM is inherited too
    reap(leader)
    rec, path = recorded(leader, run_dir)
    until(lambda: len(group_members(leader.pid)) == 2, what="child of the leader")
    began = time.monotonic()
    groups.stop(rec, path, after=0.3)
    assert time.monotonic() - began >= 0.3
    assert group_members(leader.pid) == [] and not path.exists()
    assert leader.wait(5) == -signal.SIGKILL


def test_a_record_whose_pid_now_names_another_program_is_dropped_without_a_signal(run_dir, reap):
    other = start_group()
    reap(other)
    rec, path = recorded(other, run_dir)
    stale = Record(**{**rec.__dict__, "leader_start": rec.leader_start - 1})
    stale_path = groups.write(stale, run_dir)
    assert groups.stop(stale, stale_path) == []
    assert other.poll() is None and group_members(other.pid) == [other.pid]
    assert not stale_path.exists() and path.exists()


def test_records_of_another_host_are_left_alone_and_of_an_earlier_boot_forgotten(run_dir, reap):
    process = start_group()
    reap(process)
    rec, path = recorded(process, run_dir)
    elsewhere = groups.write(Record(**{**rec.__dict__, "host": socket.gethostname() + "-other", "attempt": 2}), run_dir)
    before = groups.write(Record(**{**rec.__dict__, "boot": "an-earlier-boot", "attempt": 3}), run_dir)
    assert groups.stop_where(run_dir, lambda r: r.attempt != 1) == []
    assert process.poll() is None
    assert elsewhere.exists() and not before.exists() and path.exists()


async def test_spawn_records_the_group_while_it_runs_and_forgets_it_once_gone(run_dir, tmp_path):
    ctx = SimpleNamespace(id=12, attempt=3)
    proc = await groups.spawn(ctx, "sh", "-c", "sleep 60 & wait", cwd=tmp_path)
    [(path, rec)] = groups.read(run_dir)
    me = groups.read_proc(os.getpid())
    assert (rec.pgid, rec.promise, rec.attempt, rec.workspace) == (proc.pid, 12, 3, str(tmp_path.resolve()))
    assert (rec.owner, rec.owner_start, rec.host) == (me.pid, me.start, socket.gethostname())
    assert rec.leader_start == groups.read_proc(proc.pid).start and path.name == rec.name
    for _ in range(200):  # the shell has forked its `sleep` (on a loaded machine it may not have yet)
        if len(group_members(proc.pid)) == 2:
            break
        await asyncio.sleep(0.02)
    proc.terminate()  # the leader only: its child keeps the group, and the record, alive
    await proc.wait()
    await asyncio.sleep(0.2)
    assert path.exists() and len(group_members(proc.pid)) == 1
    os.killpg(proc.pid, signal.SIGKILL)
    for _ in range(200):
        if not path.exists():
            break
        await asyncio.sleep(0.05)
    assert not path.exists()


def test_a_program_gets_sigterm_when_its_executor_is_killed(run_dir, tmp_path):
    # An executor-like process spawns `sleep` through groups.spawn and is then killed -9.
    code = ("import asyncio, sys, types\n"
            "from services.executor import groups\n"
            "async def main():\n"
            "    proc = await groups.spawn(types.SimpleNamespace(id=1, attempt=1), 'sleep', '60')\n"
            "    print(proc.pid, flush=True)\n"
            "    await asyncio.sleep(60)\n"
            "asyncio.run(main())\n")
    executor = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        pid = int(executor.stdout.readline())
        assert group_members(pid) == [pid]
    finally:
        executor.kill()
        executor.wait()
    until(lambda: group_members(pid) == [], what="end of the orphaned program")


async def test_an_attempt_first_stops_what_an_earlier_run_of_its_promise_left_running(js, executor, run_dir, reap):
    # Recorded by a live owner (this test): the promise's run is stopped all the same.
    leftover, other = start_group(), start_group()
    reap(leftover)
    reap(other)
    _, path = recorded(leftover, run_dir, promise=7)
    _, other_path = recorded(other, run_dir, promise=8)
    seen = []

    async def look(ctx):
        seen.append(group_members(leftover.pid))
        return "ran"

    ex = await executor(handlers={"look": look})
    await put_work(js, WorkItem(id=7, attempt=2, task="look"))
    await ex.run_until_idle()
    assert seen == [[]] and not path.exists()
    assert names(await story(js, 7)) == ["started", "succeeded"]
    assert other.poll() is None and other_path.exists()  # another promise's, with its owner alive


async def test_an_executor_starting_stops_the_groups_whose_executor_is_dead(executor, run_dir, reap):
    dead = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    owner = until(lambda: groups.read_proc(dead.pid), what="owner process")
    dead.kill()
    dead.wait()
    orphan, kept = start_group(), start_group()
    reap(orphan)
    reap(kept)
    _, orphan_path = recorded(orphan, run_dir, promise=1, owner=owner)
    _, kept_path = recorded(kept, run_dir, promise=2)
    await executor()
    assert orphan.wait(5) == -signal.SIGTERM and not orphan_path.exists()
    assert kept.poll() is None and kept_path.exists()
