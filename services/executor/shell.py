"""The ``shell`` task: one allowlisted program with an argv list, never a shell string.

The program runs in its own session so that a cancel or timeout can kill its
whole process group, children included.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterable, Mapping
from typing import Any

from valor.logs import SECRET_NAME

from . import config, groups
from .context import AttemptContext, Handler, TaskFailed

TAIL = 4096
KILL_AFTER = 2.0


def check_argv(spec: Any, allow: frozenset[str]) -> tuple[list[str], str | None]:
    """Return (argv, cwd) or raise a non-retryable TaskFailed saying what is wrong."""
    if not isinstance(spec, dict):
        raise TaskFailed("shell input must be an object with 'argv'", retryable=False)
    argv = spec.get("argv")
    if isinstance(argv, str):
        raise TaskFailed("shell argv must be a list of strings, not a shell string", retryable=False)
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise TaskFailed("shell argv must be a non-empty list of strings", retryable=False)
    cwd = spec.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        raise TaskFailed("shell cwd must be a string", retryable=False)
    # The OS cannot take them (exec raises ValueError, which would count as a retryable crash).
    if any("\x00" in a for a in argv):
        raise TaskFailed("shell argv must not contain NUL bytes", retryable=False)
    if cwd is not None and "\x00" in cwd:
        raise TaskFailed("shell cwd must not contain NUL bytes", retryable=False)
    program = argv[0]
    # Exact match only: a path such as '/tmp/echo' is refused unless that very path is listed.
    if program not in allow:
        raise TaskFailed(f"program '{program}' is not allowed; allowed: {', '.join(sorted(allow))}", retryable=False)
    return argv, cwd


async def _tail(stream: asyncio.StreamReader | None, keep: bytearray) -> None:
    # Keep only the last TAIL bytes so a chatty program cannot fill memory.
    if stream is None:
        return
    while chunk := await stream.read(65536):
        keep += chunk
        del keep[:-TAIL]


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


async def kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the whole group, then SIGKILL whatever is left after KILL_AFTER seconds."""
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(proc.wait()), KILL_AFTER)
    except TimeoutError:
        pass
    # Children can outlive the leader or ignore SIGTERM; nothing of the group may stay.
    _signal_group(proc.pid, signal.SIGKILL)
    await proc.wait()


def shell_handler(allow: Iterable[str]) -> Handler:
    """The ``shell`` task with valor.toml's allowlist (``VALOR_SHELL_ALLOW`` overrides it)."""
    allowed = config.shell_allowlist(allow)

    async def shell(ctx: AttemptContext) -> dict[str, Any]:
        return await run_shell(ctx, allowed)

    return shell


def program_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a task's program sees: Valor's secrets stay out of it."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in env.items() if not SECRET_NAME.search(k)}


async def run_shell(ctx: AttemptContext, allow: frozenset[str] | None = None) -> dict[str, Any]:
    argv, cwd = check_argv(ctx.input, config.shell_allowlist() if allow is None else allow)
    try:
        proc = await groups.spawn(  # recorded, so the next executor finds it if we die
            ctx,
            *argv,
            cwd=cwd,
            env=program_env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except (FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        raise TaskFailed(f"cannot start '{argv[0]}': {exc.strerror or exc}", retryable=False) from exc
    out, err = bytearray(), bytearray()
    try:
        await ctx.progress(f"running {argv[0]} (pid {proc.pid})")
        await asyncio.gather(_tail(proc.stdout, out), _tail(proc.stderr, err))
        code = await proc.wait()
    except BaseException:
        # Cancelled or timed out: leave no process behind.
        await asyncio.shield(kill_group(proc))
        raise
    stderr_tail = err.decode(errors="replace")
    if code != 0:
        raise TaskFailed(f"exit code {code}: {stderr_tail.strip()}", retryable=False)
    return {"exit_code": code, "stdout_tail": out.decode(errors="replace"), "stderr_tail": stderr_tail}
