"""Task process groups on this host: recorded while they run, stopped when their owner cannot.

A handler that runs a program (the Claude Code CLI, a shell task) starts it in a
session of its own, so that a timeout or a cancel can stop its whole process
group.  An executor killed with ``kill -9`` stops nothing: its group would run
on, writing the workspace, while the redelivered attempt starts a second one
there.  So ``spawn`` records each group in a file under ``$VALOR_RUN_DIR``
(default ``var/run/tasks/``) until the group is gone, and:

- before an attempt runs, the executor stops every recorded group of its
  promise (any attempt, any owner): two runs of one promise never overlap;
- before a program is started, and when an executor starts, every recorded
  group whose owner process is dead is stopped: nobody reads its output;
- ``make down`` stops every recorded group of the checkout.

A local file, not a NATS record: a pgid means something only on its host and
until its next boot, and ``make down`` must work when NATS is already gone.

Stopping is SIGTERM (Claude Code then ends the tool commands it runs in
sessions of their own), SIGKILL after ``STOP_AFTER`` seconds, and returns once
no member is alive.  A group is signalled only while it is provably the recorded
one: its leader, while alive, has the recorded start time, so a pid reused by
another program is never signalled; once the leader is gone, the members left
share its session and started after it (the kernel hands out no pid that still
names a group).

As a first line of defence the program also gets SIGTERM when the executor dies
(``PR_SET_PDEATHSIG``): it is cleared in the program's own children, so Claude
Code's tool commands are untouched and it ends them itself.  The kernel sends it
when the *thread* that started the program ends: programs are started from the
event loop's thread, which lives as long as the executor.

Standard library only: ``deploy/health.py`` (``make down``) imports it.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import logs

if TYPE_CHECKING:
    from .context import AttemptContext

RUN_DIR_ENV = "VALOR_RUN_DIR"
DEFAULT_RUN_DIR = "var/run/tasks"
STOP_AFTER = 2.0  # seconds between SIGTERM and SIGKILL, as for a timeout (shell.KILL_AFTER)
KILLED_WITHIN = 10.0  # after SIGKILL: only a process stuck in the kernel takes longer
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Proc:
    """What /proc/<pid>/stat says about a process that matters here."""

    pid: int
    state: str
    pgid: int
    sid: int
    start: int  # clock ticks after boot: with the pid, it names one process

    @property
    def alive(self) -> bool:
        return self.state not in ("Z", "X")  # a zombie waits for its reaper; it runs nothing


@dataclass(frozen=True)
class Record:
    """One running task process group, as the next executor on this host needs it."""

    pgid: int
    leader_start: int
    promise: int
    attempt: int
    workspace: str
    owner: int  # the executor process
    owner_start: int
    host: str
    boot: str  # /proc/sys/kernel/random/boot_id: a pid names nothing after a reboot

    @property
    def name(self) -> str:
        # The promise first: the check before every attempt reads names, not files.
        return f"{self.promise}-{self.attempt}-{self.pgid}-{self.leader_start}.json"

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode() + b"\n"

    @classmethod
    def decode(cls, data: bytes) -> Record:
        """The record, or ValueError saying what is wrong with the file."""
        try:
            fields = json.loads(data)
            record = cls(**fields)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a task group record: {exc}") from None
        types = {"workspace": str, "host": str, "boot": str}
        for name, value in asdict(record).items():
            wanted = types.get(name, int)
            if not isinstance(value, wanted) or isinstance(value, bool):
                raise ValueError(f"not a task group record: {name} is {value!r}")
        return record


# -- decisions (plain values in, plain values out) ----------------------------------------------------


def parse_stat(pid: int, text: str) -> Proc:
    """A /proc/<pid>/stat line; the command name may hold spaces and parentheses, so split at the last ')'."""
    fields = text.rsplit(")", 1)[1].split()
    return Proc(pid=pid, state=fields[0], pgid=int(fields[2]), sid=int(fields[3]), start=int(fields[19]))


def members(record: Record, procs: Iterable[Proc]) -> list[int]:
    """The live pids of the recorded group; none once its pgid names another group, or nothing."""
    procs = list(procs)
    leader = next((p for p in procs if p.pid == record.pgid), None)
    if leader is not None and leader.start != record.leader_start:
        return []  # the pid was given to another program
    return sorted(p.pid for p in procs if p.alive and p.pgid == record.pgid and p.sid == record.pgid
                  and p.start >= record.leader_start)


def owner_alive(record: Record, proc: Callable[[int], Proc | None]) -> bool:
    """Whether the executor that started the group still runs (not another program with its pid)."""
    owner = proc(record.owner)
    return owner is not None and owner.alive and owner.start == record.owner_start


def placed(record: Record, host: str, boot: str) -> str:
    """``here``, ``elsewhere`` (another host's: not ours to judge) or ``gone`` (this host, an earlier boot)."""
    if record.host != host:
        return "elsewhere"
    return "here" if record.boot == boot else "gone"


# -- this host ------------------------------------------------------------------------------------


def run_dir() -> Path:
    return Path(os.environ.get(RUN_DIR_ENV) or DEFAULT_RUN_DIR)


def read_proc(pid: int) -> Proc | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return parse_stat(pid, f.read())
    except (OSError, ValueError, IndexError):
        return None


def processes() -> list[Proc]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (proc := read_proc(int(entry.name))) is not None:
            found.append(proc)
    return found


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def record_of(pid: int, promise: int, attempt: int, workspace: str) -> Record | None:
    """The record of a group just started with leader ``pid``; None if it has already ended."""
    leader, me = read_proc(pid), read_proc(os.getpid())
    if leader is None or me is None:
        return None
    return Record(pgid=pid, leader_start=leader.start, promise=promise, attempt=attempt, workspace=workspace,
                  owner=me.pid, owner_start=me.start, host=socket.gethostname(), boot=boot_id())


def write(record: Record, directory: Path) -> Path:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / record.name
    partial = directory / f".{record.name}.partial"
    partial.write_bytes(record.encode())
    os.replace(partial, path)  # the next executor reads a whole record or none
    return path


def read(directory: Path) -> list[tuple[Path, Record]]:
    """The records under ``directory``; a file that is not one is reported and left alone."""
    paths = sorted(directory / n for n in _names(directory) if n.endswith(".json") and not n.startswith("."))
    found = []
    for path in paths:
        try:
            found.append((path, Record.decode(path.read_bytes())))
        except FileNotFoundError:
            continue  # its group ended meanwhile
        except (OSError, ValueError) as exc:
            logs.warning("groups.unreadable", path=str(path), error=str(exc))
    return found


def gone(record: Record) -> bool:
    try:
        os.killpg(record.pgid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # another user's group by now: members() tells
    return not members(record, processes())


def _signal(record: Record, sig: signal.Signals) -> list[int]:
    """Signal the group if it is still the recorded one; the pids it had."""
    pids = members(record, processes())
    if pids and record.pgid > 1 and record.pgid != os.getpgrp():
        try:
            os.killpg(record.pgid, sig)
        except (ProcessLookupError, PermissionError):
            return []
    return pids


def _wait_gone(record: Record, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    delay = 0.005
    while not gone(record):
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    return True


def stop(record: Record, path: Path, after: float = STOP_AFTER) -> list[int]:
    """SIGTERM the group, SIGKILL what is left after ``after`` seconds; return once none lives.

    Returns the pids it found running.  The record is removed once the group is
    gone; a group still alive after SIGKILL (stuck in the kernel) keeps it.
    """
    found = _signal(record, signal.SIGTERM)
    if found and not _wait_gone(record, after):
        _signal(record, signal.SIGKILL)
        if not _wait_gone(record, KILLED_WITHIN):
            logs.warning("groups.unkillable", pgid=record.pgid, promise_id=record.promise, pids=members(record, processes()))
            return found
    path.unlink(missing_ok=True)
    return found


def stop_where(directory: Path, which: Callable[[Record], bool]) -> list[tuple[Record, list[int]]]:
    """Stop the groups of this host that ``which`` picks; forget records of an earlier boot."""
    host, boot = socket.gethostname(), boot_id()
    stopped = []
    for path, record in read(directory):
        where = placed(record, host, boot)
        if where == "gone":
            path.unlink(missing_ok=True)
        elif where == "here" and which(record):
            stopped.append((record, stop(record, path)))
    return stopped


# -- the executor's side --------------------------------------------------------------------------


def _names(directory: Path) -> list[str]:
    try:
        return os.listdir(directory)
    except FileNotFoundError:
        return []
    except OSError as exc:  # never a reason to fail an attempt: the records only help
        logs.warning("groups.unreadable", path=str(directory), error=str(exc))
        return []


def _stopped(stopped: list[tuple[Record, list[int]]], why: str) -> list[Record]:
    for record, pids in stopped:
        if pids:
            logs.warning("groups.stopped", why=why, pgid=record.pgid, pids=pids, promise_id=record.promise,
                         attempt=record.attempt, workspace=record.workspace, owner=record.owner)
    return [record for record, pids in stopped if pids]


async def stop_leftovers(promise: int, directory: Path | None = None) -> list[Record]:
    """Before an attempt of ``promise`` runs: stop its recorded groups of this host (any attempt, any owner)."""
    directory = run_dir() if directory is None else directory
    names = _names(directory)  # every attempt pays this much, no more
    if not any(name.startswith(f"{promise}-") for name in names):
        return []
    stopped = await asyncio.to_thread(stop_where, directory, lambda r: r.promise == promise)
    return _stopped(stopped, "another run of the promise")


async def stop_orphans(directory: Path | None = None) -> list[Record]:
    """Stop the recorded groups of this host whose executor is dead."""
    directory = run_dir() if directory is None else directory
    if not _names(directory):
        return []
    stopped = await asyncio.to_thread(stop_where, directory, lambda r: not owner_alive(r, read_proc))
    return _stopped(stopped, "its executor is gone")


def _load_prctl() -> Callable[..., int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: the records alone must do
        return None


_prctl = _load_prctl()


def _die_with(parent: int) -> Callable[[], None] | None:
    """A preexec_fn: SIGTERM when ``parent`` (the executor) dies, even by SIGKILL."""
    prctl = _prctl
    if prctl is None:
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # it died before prctl: no signal would come
            os._exit(1)

    return preexec


_watchers: set[asyncio.Task] = set()


async def spawn(ctx: AttemptContext, *argv: str, **options: Any) -> asyncio.subprocess.Process:
    """``asyncio.create_subprocess_exec`` in a session of its own, recorded until its group is gone.

    Orphaned groups of this host are stopped first: whatever workspace they
    write, nobody will read their output.
    """
    directory = run_dir()
    await stop_orphans(directory)
    options["start_new_session"] = True
    proc = await asyncio.create_subprocess_exec(*argv, preexec_fn=_die_with(os.getpid()), **options)
    workspace = str(Path(options.get("cwd") or ".").resolve())
    record = record_of(proc.pid, ctx.id, ctx.attempt, workspace)
    if record is not None:  # None: it ended already, with nothing left to record
        try:
            path = write(record, directory)
        except OSError as exc:
            logs.warning("groups.unrecorded", pgid=proc.pid, promise_id=ctx.id, error=str(exc))
        else:
            watcher = asyncio.create_task(_forget_when_gone(proc, record, path))
            _watchers.add(watcher)
            watcher.add_done_callback(_watchers.discard)
    return proc


async def _forget_when_gone(proc: asyncio.subprocess.Process, record: Record, path: Path) -> None:
    await proc.wait()  # the handler ends what the leader left behind (or leaves it, as a shell task may)
    delay = 0.01
    while not gone(record):
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)
    path.unlink(missing_ok=True)
