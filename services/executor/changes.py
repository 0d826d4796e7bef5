"""What an attempt changed in its workspace: the workspace's tree before and after, compared by git.

Git or not, a workspace is read through a private index in a scratch git
directory (its ``.gitignore`` files are honoured, its own ``.git`` is never
touched): ``git add -A`` then ``write-tree`` before the attempt and after it,
and ``diff-tree --numstat`` between the two trees.  So commits, staged and
untracked edits, files written by the model's tools and by any command all
count the same, and the second snapshot only rehashes what changed.
Directories that are rebuilt rather than written (virtualenvs,
``node_modules``, caches) are left out: the command that built them is in
the evidence instead.  A snapshot that fails or takes too long leaves the
files unknown, with the reason; it never fails the attempt.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from schemas.events import FileChange

TIMEOUT = 60.0  # seconds per git call; a workspace that takes longer is not compared
MAX_FILES = 200
EXCLUDE = (".claude/", ".venv/", "venv/", "env/", "node_modules/", "__pycache__/", "*.pyc", ".pytest_cache/",
           ".mypy_cache/", ".ruff_cache/", ".tox/", ".nox/", ".cache/", "inbox/")
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


class Snapshots:
    """Two snapshots of one workspace, in a scratch git directory removed by ``close``."""

    def __init__(self, workspace: Path):
        self.workspace = workspace
        self.scratch: Path | None = None

    async def take(self) -> str:
        """The workspace's tree id now."""
        if self.scratch is None:
            self.scratch = Path(tempfile.mkdtemp(prefix="valor-changes-"))
            await self._git("init", "-q", "--bare", str(self.scratch / "git"), bare=True)
            (self.scratch / "git" / "info").mkdir(exist_ok=True)
            (self.scratch / "git" / "info" / "exclude").write_text("\n".join(EXCLUDE) + "\n")
        await self._git("add", "-A", ".")
        return (await self._git("write-tree")).strip()

    async def compare(self, before: str, after: str) -> Compared:
        if before == after:
            return Compared([])
        name_status = await self._git("diff-tree", "-r", "-z", "--no-renames", "--name-status", before, after)
        numstat = await self._git("diff-tree", "-r", "-z", "--no-renames", "--numstat", before, after)
        files = parse(name_status, numstat)
        return Compared(files[:MAX_FILES], max(0, len(files) - MAX_FILES))

    def close(self) -> None:
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None

    async def _git(self, *args: str, bare: bool = False) -> str:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.scratch), **GIT_ENV}
        if not bare:
            env.update(GIT_DIR=str(self.scratch / "git"), GIT_WORK_TREE=str(self.workspace),
                       GIT_INDEX_FILE=str(self.scratch / "index"))
        try:
            proc = await asyncio.create_subprocess_exec(
                "git", *args, cwd=self.workspace, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            raise Unknown(f"git cannot run: {exc.strerror or exc}") from None
        try:
            async with asyncio.timeout(TIMEOUT):
                out, err = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise Unknown(f"the workspace took more than {TIMEOUT:g}s to read") from None
        if proc.returncode != 0:
            raise Unknown(f"git {args[0]} failed: {err.decode(errors='replace').strip()[:300]}")
        return out.decode(errors="replace")
