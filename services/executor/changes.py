"""What an attempt changed in its workspace: the workspace's tree before and after, compared by git.

Git or not, a workspace is read into a scratch git directory of its own (the
workspace's own ``.git`` is never touched): its files are walked, hashed with
``hash-object`` and put in a private index (``update-index --index-info``),
``write-tree`` before the attempt and after it, and ``diff-tree --numstat``
between the two trees.  So commits, staged and untracked edits, files written
by the model's tools and by any command all count the same; repositories
nested in the workspace (a chat's projects side by side) are read like any
directory, which ``git add`` would refuse; ``.gitignore`` files are honoured
(``ls-files --ignored``); and the second snapshot only rehashes the files
whose size or time changed.
Directories that are rebuilt rather than written (virtualenvs,
``node_modules``, caches) are left out: the command that built them is in
the evidence instead.  A snapshot that fails or takes too long leaves the
files unknown, with the reason; it never fails the attempt.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from schemas.events import FileChange

TIMEOUT = 60.0  # seconds per git call; a workspace that takes longer is not compared
MAX_FILES = 200
EXCLUDE_DIRS = frozenset({".claude", ".venv", "venv", "env", "node_modules", "__pycache__", ".pytest_cache",
                          ".mypy_cache", ".ruff_cache", ".tox", ".nox", ".cache", "inbox"})
EXCLUDE_SUFFIXES = (".pyc",)
# Git must not read the operator's or the system's configuration for this, nor ask anything.
GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0",
           "GIT_AUTHOR_NAME": "valor", "GIT_AUTHOR_EMAIL": "valor@localhost",
           "GIT_COMMITTER_NAME": "valor", "GIT_COMMITTER_EMAIL": "valor@localhost"}
STATUS = {"A": "added", "M": "modified", "D": "deleted", "T": "modified"}


class Unknown(Exception):
    """The workspace could not be compared; the text says why."""


@dataclass(frozen=True)
class Compared:
    files: list[FileChange]
    dropped: int = 0


def parse(name_status: str, numstat: str) -> list[FileChange]:
    """``diff-tree -z --name-status`` and ``--numstat`` outputs as file changes, by path."""
    statuses = _pairs(name_status.split("\0"))
    counts = {}
    fields = numstat.split("\0")
    i = 0
    while i < len(fields):
        if not fields[i].strip():
            i += 1
            continue
        added, removed, path = fields[i].split("\t", 2)
        counts[path] = (None if added == "-" else int(added), None if removed == "-" else int(removed))
        i += 1
    return [FileChange(path=path, status=STATUS.get(letter[:1], "modified"),
                       added=counts.get(path, (None, None))[0], removed=counts.get(path, (None, None))[1])
            for path, letter in sorted(statuses.items())]


def _pairs(fields: list[str]) -> dict[str, str]:
    out = {}
    for i in range(0, len(fields) - 1, 2):
        if fields[i]:
            out[fields[i + 1]] = fields[i]
    return out


def walk(root: Path, ignored: Callable[[str], set[str]]) -> dict[str, tuple[int, int, int]]:
    """Every regular file below ``root`` (path -> size, mtime, git mode), leaving out ``.git`` and ignored paths.

    ``ignored(dir)`` gives what a repository at ``dir`` (relative, "" for the root) ignores, as ``ls-files
    --directory`` prints it ("build/", "x.log"); it is asked for the root and each nested repository.
    """
    found = {}
    skip = set()
    for top, dirs, files in os.walk(root):
        rel = os.path.relpath(top, root)
        prefix = "" if rel == "." else rel + "/"
        if not prefix or ".git" in dirs:
            skip |= {prefix + p for p in ignored(prefix)}
        dirs[:] = [d for d in dirs if d != ".git" and d not in EXCLUDE_DIRS and f"{prefix}{d}/" not in skip]
        for name in files:
            path = prefix + name
            if path in skip or name.endswith(EXCLUDE_SUFFIXES) or "\n" in path:
                continue
            try:
                st = os.lstat(os.path.join(top, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                found[path] = (st.st_size, st.st_mtime_ns, 0o100755 if st.st_mode & 0o111 else 0o100644)
    return found


class Snapshots:
    """Two snapshots of one workspace, in a scratch git directory removed by ``close``."""

    def __init__(self, workspace: Path):
        self.workspace = workspace
        self.scratch: Path | None = None
        self.known: dict[str, tuple[tuple[int, int, int], str]] = {}  # path -> (size, mtime, mode), blob id

    async def take(self) -> str:
        """The workspace's tree id now."""
        if self.scratch is None:
            self.scratch = Path(tempfile.mkdtemp(prefix="valor-changes-"))
            await self._git("init", "-q", "--bare", str(self.scratch / "git"), bare=True)
        files = await asyncio.to_thread(walk, self.workspace, self._ignored)
        stale = [path for path, key in files.items() if self.known.get(path, (None, ""))[0] != key]
        if stale:
            blobs = (await self._git("hash-object", "-w", "--stdin-paths", stdin="\n".join(stale) + "\n")).split()
            if len(blobs) != len(stale):
                raise Unknown("git hash-object did not hash every file")
            self.known.update((path, (files[path], blob)) for path, blob in zip(stale, blobs, strict=True))
        entries = "".join(f"{files[path][2]:o} {self.known[path][1]}\t{path}\0" for path in sorted(files))
        (self.scratch / "index").unlink(missing_ok=True)  # the tree is exactly what was walked now
        await self._git("update-index", "-z", "--index-info", stdin=entries)
        return (await self._git("write-tree")).strip()

    async def compare(self, before: str, after: str) -> Compared:
        if before == after:
            return Compared([])
        name_status = await self._git("diff-tree", "-r", "-z", "--no-renames", "--name-status", before, after)
        numstat = await self._git("diff-tree", "-r", "-z", "--no-renames", "--numstat", before, after)
        files = parse(name_status, numstat)
        return Compared(files[:MAX_FILES], max(0, len(files) - MAX_FILES))

    def _ignored(self, directory: str) -> set[str]:
        """What the ``.gitignore`` files of the repository at ``directory`` ignore (nothing if it is none).

        Read with that repository's own git, read-only; the root is read
        through the scratch directory with an empty index, so it works for a
        workspace that is no repository at all.
        """
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.scratch), **GIT_ENV}
        if not directory:
            env.update(GIT_DIR=str(self.scratch / "git"), GIT_WORK_TREE=str(self.workspace),
                       GIT_INDEX_FILE=str(self.scratch / "empty-index"))
        try:
            done = subprocess.run(["git", "ls-files", "-z", "--others", "--ignored", "--exclude-standard",
                                   "--directory"], cwd=self.workspace / directory, env=env, capture_output=True,
                                  timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            return set()
        return set(filter(None, done.stdout.decode(errors="replace").split("\0"))) if done.returncode == 0 else set()

    def close(self) -> None:
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None

    async def _git(self, *args: str, bare: bool = False, stdin: str | None = None) -> str:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.scratch), **GIT_ENV}
        if not bare:
            env.update(GIT_DIR=str(self.scratch / "git"), GIT_WORK_TREE=str(self.workspace),
                       GIT_INDEX_FILE=str(self.scratch / "index"))
        try:
            proc = await asyncio.create_subprocess_exec(
                "git", *args, cwd=self.workspace, env=env,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            raise Unknown(f"git cannot run: {exc.strerror or exc}") from None
        try:
            async with asyncio.timeout(TIMEOUT):
                out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise Unknown(f"the workspace took more than {TIMEOUT:g}s to read") from None
        if proc.returncode != 0:
            raise Unknown(f"git {args[0]} failed: {err.decode(errors='replace').strip()[:300]}")
        return out.decode(errors="replace")
