"""Task types run by the Claude Code CLI: ``code``, ``search``, ``analysis``, ``code_review``.

``claude -p --input-format stream-json --output-format stream-json --verbose``
runs in the chat's workspace with the type's prompt template, permission mode
and allowed tools, inside the boundary ``sandbox.py`` draws (its Bash commands
sandboxed, its environment allowlisted).  The prompt is the first message on
its stdin, with any instructions the user added before the attempt started
joined to the input; instructions added while it runs are written into the
same live session as further user messages, and recorded as delivered once
the CLI echoes them back (``--replay-user-messages``).  Stdin is closed when
the CLI has answered every message written to it, and the CLI then exits.
Its tool calls become throttled progress ("Editing auth.py"); its final
``result`` line becomes the promise's result, and what it did becomes the
attempt's evidence: the commands it ran with their exit codes and the calls
refused (``streamjson.py``), the files it changed (``changes.py``), cost,
tokens and session.  A type's ``checks`` name the commands that are test runs;
with ``failed_check = "fail"`` a last check that failed fails the attempt (for
good: running the same work again would not make the tests pass).  The CLI
runs in its own session: a timeout or a cancel (both arrive as
``CancelledError``) kills the whole process group, children included, and the
evidence gathered so far is still recorded.

The CLI is ``$VALOR_CLAUDE_BIN``, else ``claude`` on ``PATH``.  It reads
``ANTHROPIC_API_KEY`` / ``ANTHROPIC_BASE_URL`` (or its own login) from the
environment passed through; neither the prompt nor the environment is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec

from promises.evidence import check_failed
from schemas.events import Evidence, InstructionsAdded
from valor import spend
from valor.config import ChatSandbox, Config, TaskType

from . import changes, groups, logs, sandbox, streamjson
from .context import AttemptContext, Handler, TaskFailed
from .shell import TAIL, kill_group

BIN_ENV = "VALOR_CLAUDE_BIN"
INSTALL_HINT = "install it with `npm install -g @anthropic-ai/claude-code` or set VALOR_CLAUDE_BIN"
LINE_LIMIT = 64 * 1024 * 1024  # one stream-json line carries a whole tool result
PROGRESS_EVERY = 1.0
DEP_CHARS = 20_000  # per dependency in {deps}: enough to work from, not a whole log in every prompt
# Errors no retry can fix: a bad flag, no login, a rejected key, no credit, bypassPermissions as root,
# a machine without the sandbox's tools, a session to resume that is not on this machine.
_PERMANENT = re.compile(
    r"not logged in|/login|invalid api key|invalid x-api-key|authentication|unauthori[sz]ed|"
    r"credit balance|error: (unknown )?option|error: unknown command|allowed choices|argument missing|"
    r"cannot be used with root|sandbox required but unavailable|no conversation found with session id",
    re.IGNORECASE,
)
_PLACEHOLDER = re.compile(r"\{(title|input|deps|workspace)\}")


# -- the prompt --------------------------------------------------------------------------------------


def render_prompt(template: str, title: str, input: Any, deps: dict[str, Any], workspace: str,
                  instructions: list[str] | None = None) -> str:
    """Fill ``{title}``, ``{input}``, ``{deps}`` and ``{workspace}``; any other brace is left as written.

    Instructions the user added before the attempt started are part of its input.
    """
    values = {"title": title or "", "input": render_value(input) + render_instructions(instructions or []),
              "deps": render_deps(deps), "workspace": workspace}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def render_instructions(texts: list[str]) -> str:
    if not texts:
        return ""
    return "\n\nInstructions the user added since asking:\n" + "\n".join(f"- {t.strip()}" for t in texts)


def render_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def render_deps(deps: dict[str, Any]) -> str:
    """One ``#<id>: <result>`` per dependency, by id; a Claude Code result shows as its text."""
    if not deps:
        return "(none)"
    lines = []
    for key in sorted(deps, key=_id_order):
        result = deps[key]
        if isinstance(result, dict) and isinstance(result.get("text"), str):
            shown = result["text"]
        elif result is None:
            shown = "(no result)"
        elif isinstance(result, str):
            shown = result
        else:
            shown = json.dumps(result, ensure_ascii=False, default=str)
        if len(shown) > DEP_CHARS:
            shown = shown[:DEP_CHARS] + " … (truncated)"
        lines.append(f"#{key}: {shown}")
    return "\n".join(lines)


def _id_order(key: str) -> tuple[int, int | str]:
    return (0, int(key)) if key.lstrip("-").isdigit() else (1, key)


# -- the command line --------------------------------------------------------------------------------


def find_cli(environ: dict[str, str] | os._Environ = os.environ) -> str:
    """The CLI's path, or a non-retryable TaskFailed saying where we looked and how to install it."""
    configured = environ.get(BIN_ENV)
    if configured:
        path = shutil.which(configured) if os.sep not in configured else configured
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
        looked = f"${BIN_ENV}={configured}"
    else:
        path = shutil.which("claude", path=environ.get("PATH"))
        if path:
            return path
        looked = "`claude` on PATH"
    raise TaskFailed(f"Claude Code CLI not found (looked for {looked}): {INSTALL_HINT}", retryable=False)


def command(cli: str, task_type: TaskType, resume: str | None = None,
            boundary: list[str] | None = None, max_cost: float | None = None) -> list[str]:
    """The CLI's argv; ``boundary`` is ``sandbox.options`` (settings and allowed tools) when given.

    The prompt is not in it: it is the first message on stdin, so more can follow while the CLI runs.
    """
    # Nobody answers a permission prompt: with stream-json input the CLI would otherwise ask its host on
    # stdout and wait (a network domain outside the sandbox's list hung until the command timed out).
    argv = [cli, "-p", "--input-format", "stream-json", "--output-format", "stream-json", "--verbose",
            "--replay-user-messages", "--permission-prompts", "none"]
    if resume:
        # One argument: --resume takes an optional value, and this form can never be read as anything else.
        argv.append(f"--resume={resume}")
    if max_cost is not None:
        # The CLI checks it between model calls; the executor also stops it as the streamed cost passes it.
        argv += ["--max-budget-usd", f"{max_cost:.4f}"]
    if task_type.permission_mode:
        argv += ["--permission-mode", task_type.permission_mode]
    if boundary is not None:
        argv += boundary
    elif task_type.allowed_tools:
        argv += ["--allowedTools", *task_type.allowed_tools]
    return argv


def environment(places: sandbox.Places, environ: dict[str, str] | os._Environ = os.environ) -> dict[str, str]:
    """The CLI's environment (``sandbox.environment``) keeping the operator's Claude login.

    An existing ``CLAUDE_CONFIG_DIR`` or home keeps the operator's login; only a
    home the CLI cannot write to gets a private config directory instead.
    """
    valor_bin = os.path.join(sys.prefix, "bin") if sys.prefix != sys.base_prefix else None
    env = sandbox.environment(environ, places, valor_bin)
    home = env.get("HOME") or os.path.expanduser("~")
    if not env.get("CLAUDE_CONFIG_DIR") and not (os.path.isdir(home) and os.access(home, os.W_OK)):
        env["CLAUDE_CONFIG_DIR"] = os.path.join(tempfile.gettempdir(), f"valor-claude-{os.getuid()}")
    return env


def places(cwd: Path, environ: dict[str, str] | os._Environ = os.environ) -> sandbox.Places:
    """The paths of this attempt's boundary; Valor runs from its own directory (``make up``, tests)."""
    home = Path.cwd()
    key = hashlib.sha256(str(cwd).encode()).hexdigest()[:16]
    secrets = [Path(environ["CLAUDE_CONFIG_DIR"])] if environ.get("CLAUDE_CONFIG_DIR") else []
    secrets += [Path(v) for k, v in environ.items() if k.startswith("VALOR_") and k.endswith("_FILE") and v]
    return sandbox.Places(workspace=cwd, valor_home=home, home=Path(environ.get("HOME") or Path.home()),
                          cache=home / "var" / "cache" / key, secrets=tuple(secrets))


def entries(directory: Path) -> list[Path]:
    """A directory's entries, for drawing a denial around the workspace (none if it cannot be read)."""
    try:
        return sorted(directory.iterdir())
    except OSError:
        return []


def workspace(config: Config, chat_id: int | None) -> Path:
    path = Path(config.workspace_for(chat_id)).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TaskFailed(f"workspace {path} cannot be created: {exc.strerror or exc}", retryable=False) from exc
    return path


def failure(text: str, retryable: bool | None = None) -> TaskFailed:
    text = text.strip() or "Claude Code failed without saying why"
    return TaskFailed(text, retryable=not _PERMANENT.search(text) if retryable is None else retryable)


# -- running it -------------------------------------------------------------------------------------


def claude_handler(type_name: str, task_type: TaskType, config: Config) -> Handler:
    """The handler for one Claude Code task type of ``valor.toml``."""
    checks = re.compile(task_type.checks)

    async def run(ctx: AttemptContext) -> dict[str, Any]:
        cli = find_cli()
        cwd = workspace(config, ctx.chat_id)
        chat = config.chats.get(str(ctx.chat_id)) if ctx.chat_id is not None else None
        chat_sandbox = chat.sandbox if chat else ChatSandbox()
        where = places(cwd)
        where.cache.mkdir(parents=True, exist_ok=True)  # the sandbox binds it: it must exist
        prompt = render_prompt(task_type.prompt, ctx.title, ctx.input, ctx.deps, str(cwd), ctx.instructions.texts)
        boundary = sandbox.options(task_type, chat_sandbox, where, entries)
        argv = command(cli, task_type, ctx.resume_session, boundary, ctx.max_cost)
        result = await run_claude(ctx, argv, prompt, cwd, type_name, environment(where), checks)
        failed = check_failed(ctx.evidence)
        if failed is not None and task_type.failed_check == "fail":
            raise TaskFailed(f"the check `{failed.command}` exited {failed.exit_code}", retryable=False)
        return result

    run.__name__ = run.__qualname__ = f"claude_{type_name}"
    return run


class LiveInput:
    """The CLI's stdin: the prompt, then instructions as they come, closed once all of them are answered.

    With ``--input-format stream-json`` the CLI waits for more input after each
    turn's ``result``; it exits when stdin closes.  An instruction written while
    a turn runs joins it (the CLI adds it to its next request); one written
    after a turn ended starts another turn.  So stdin closes at a ``result``
    when every instruction written has been echoed back (taken in): none can
    be left unanswered, and the CLI is never left waiting.  An error result
    closes it whatever is pending: such a run is over.
    """

    def __init__(self, stdin: asyncio.StreamWriter | None, ctx: AttemptContext, fields: dict[str, Any]):
        self.stdin = stdin
        self.ctx = ctx
        self.fields = fields
        self.pending: dict[str, InstructionsAdded] = {}  # written, not echoed yet (by uuid)
        self.closed = stdin is None
        self.results = 0

    async def write(self, text: str) -> str | None:
        """Write one user message; its uuid, or None once stdin is closed."""
        if self.closed or self.stdin is None:
            return None
        message_id = str(uuid.uuid4())
        try:
            self.stdin.write(streamjson.user_message(text, message_id))
            await self.stdin.drain()
        except OSError:  # the CLI is gone (a broken pipe): nothing more reaches it
            self.closed = True
            return None
        return message_id

    async def feed(self, prompt: str) -> None:
        """Write the prompt, then each instruction that arrives while the CLI runs (a task until stdin closes).

        A task of its own, beside the reading of stdout: a prompt bigger than the pipe's buffer waits
        for the CLI to read it, and the CLI may write first.
        """
        await self.write(prompt)
        while not self.closed:
            instruction = await self.ctx.instructions.next()
            message_id = await self.write(instruction.text)
            if message_id is None:
                logs.info("claude.instructions_not_delivered", request_id=instruction.request_id,
                          reason="the session had ended", **self.fields)
                return
            self.pending[message_id] = instruction
            logs.info("claude.instructions_written", request_id=instruction.request_id, **self.fields)

    async def seen(self, stream: streamjson.Stream) -> None:
        """After each line of output: record what was taken in, close stdin once everything is answered."""
        for message_id in [m for m in self.pending if m in stream.replayed]:
            await self.ctx.instructions.delivered(self.pending.pop(message_id))
        if stream.results > self.results:
            self.results = stream.results
            failed = stream.outcome is not None and stream.outcome.is_error
            if not self.pending or failed:
                self.close()

    def close(self) -> None:
        if self.closed or self.stdin is None:
            self.closed = True
            return
        self.closed = True
        with contextlib.suppress(OSError, RuntimeError):
            self.stdin.close()


async def run_claude(ctx: AttemptContext, argv: list[str], prompt: str, cwd: Path, type_name: str,
                     env: dict[str, str] | None = None, checks: re.Pattern | None = None) -> dict[str, Any]:
    fields = {"promise_id": ctx.id, "attempt": ctx.attempt, "task": type_name}
    snapshots = changes.Snapshots(cwd)
    before = await _snapshot(snapshots)
    try:
        proc = await groups.spawn(  # recorded, so the next executor finds it if we die
            ctx,
            *argv,
            cwd=cwd,
            env=env if env is not None else environment(places(cwd)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            limit=LINE_LIMIT,
        )
    except OSError as exc:
        snapshots.close()
        raise TaskFailed(f"cannot start Claude Code ({argv[0]}): {exc.strerror or exc}", retryable=False) from exc
    logs.info("claude.started", pid=proc.pid, workspace=str(cwd), **fields)
    err = bytearray()
    stderr_task = asyncio.create_task(_tail(proc.stderr, err))
    stream = streamjson.Stream()
    live = LiveInput(proc.stdin, ctx, fields)
    feeding: asyncio.Task | None = None

    async def seen(now: streamjson.Stream) -> None:
        nonlocal stream
        stream = now
        if over := over_cap(now, ctx.max_cost):
            raise over
        await live.seen(now)

    try:
        feeding = asyncio.create_task(live.feed(prompt))
        await _follow(proc.stdout, ctx, seen)
        live.close()
        await stderr_task
        code = await proc.wait()
    except BaseException:
        # Timed out or cancelled: leave no process behind, record what was done so far, then let the
        # executor record the end.
        stderr_task.cancel()
        live.close()
        await asyncio.shield(kill_group(proc))
        logs.info("claude.killed", pid=proc.pid, **fields)
        ctx.evidence = _evidence(stream, checks, files_unknown="the attempt was stopped before it ended")
        snapshots.close()
        raise
    finally:
        if feeding is not None:
            feeding.cancel()
    _reap_group(proc.pid)  # anything the CLI started and left running
    try:
        ctx.evidence = await _evidence_with_files(stream, checks, snapshots, before)
    finally:
        snapshots.close()
    result = stream.outcome
    logs.info("claude.exited", pid=proc.pid, code=code, cost_usd=result.cost_usd if result else None,
              is_error=result.is_error if result else None, undelivered=len(live.pending), **fields)
    return finish(stream, code, err.decode(errors="replace"), ctx.max_cost)


async def _snapshot(snapshots: changes.Snapshots) -> str | changes.Unknown:
    try:
        return await snapshots.take()
    except changes.Unknown as exc:
        return exc


def _evidence(stream: streamjson.Stream, checks: re.Pattern | None, **more: Any) -> Evidence:
    evidence = stream.evidence()
    commands = [msgspec.structs.replace(c, check=bool(checks.search(c.command))) if checks else c
                for c in evidence.commands]
    return msgspec.structs.replace(evidence, commands=commands, **more)


async def _evidence_with_files(stream: streamjson.Stream, checks: re.Pattern | None,
                               snapshots: changes.Snapshots, before: str | changes.Unknown) -> Evidence:
    if isinstance(before, changes.Unknown):
        return _evidence(stream, checks, files_unknown=str(before))
    try:
        compared = await snapshots.compare(before, await snapshots.take())
    except changes.Unknown as exc:
        return _evidence(stream, checks, files_unknown=str(exc))
    return _evidence(stream, checks, files=compared.files, files_dropped=compared.dropped)


def over_cap(stream: streamjson.Stream, max_cost: float | None) -> TaskFailed | None:
    """The failure for good of an attempt whose spend passed its cap (decision 47), or None."""
    spent = stream.cost_usd
    if max_cost is None or spent is None or spent <= max_cost:
        return None
    return cap_reached(max_cost, spent)


def cap_reached(max_cost: float | None, spent: float | None) -> TaskFailed:
    cap = f"its cost cap of {spend.usd(max_cost)}" if max_cost is not None else "its cost cap"
    so_far = f" ({spend.usd(spent)} spent)" if spent is not None else ""
    return TaskFailed(f"stopped at {cap}{so_far}; not retried", retryable=False)


def finish(stream: streamjson.Stream, code: int, stderr: str, max_cost: float | None = None) -> dict[str, Any]:
    """The promise's result, or the TaskFailed that says why there is none."""
    result = stream.outcome
    if result is not None and not result.is_error:
        return result.as_result()
    if result is not None and result.subtype == "error_max_budget_usd":
        raise cap_reached(max_cost, stream.cost_usd)
    if result is not None:
        # A result line without text names only its subtype; the CLI's stderr says more (a missing sandbox).
        bare = result.text in ("", result.subtype.replace("_", " "))
        raise failure((stderr.strip() if bare and stderr.strip() else "") or result.text or stderr or result.subtype)
    detail = stderr.strip() or stream.last_text
    if code != 0:
        raise failure(f"Claude Code exited with code {code}: {detail}".rstrip(": "))
    raise failure(f"Claude Code ended without a result: {detail}".rstrip(": "))


async def _seen_nothing(stream: streamjson.Stream) -> None:
    return None


async def _follow(stdout: asyncio.StreamReader | None, ctx: AttemptContext,
                  seen=_seen_nothing) -> streamjson.Stream:
    """Read stream-json to the end, reporting tool calls as progress at most once per second.

    ``seen`` gets the fold after every line, so an attempt stopped half-way still has what it did.
    """
    stream = streamjson.Stream()
    if stdout is None:
        return stream
    throttle = streamjson.Throttle(PROGRESS_EVERY)
    reading = asyncio.ensure_future(_readline(stdout))
    try:
        while True:
            wait = throttle.wait(time.monotonic())
            done, _ = await asyncio.wait({reading}, timeout=wait)
            if not done:  # a held-back progress text is due while the CLI is quiet
                if text := throttle.due(time.monotonic()):
                    await ctx.progress(text)
                continue
            line = reading.result()
            if line is None:
                return stream
            reading = asyncio.ensure_future(_readline(stdout))
            stream, texts = streamjson.step(stream, line)
            await seen(stream)
            for text in texts:
                if ready := throttle.offer(text, time.monotonic()):
                    await ctx.progress(ready)
    finally:
        reading.cancel()


async def _readline(stdout: asyncio.StreamReader) -> bytes | None:
    """The next line, None at the end; a line over LINE_LIMIT is dropped, not fatal."""
    while True:
        try:
            line = await stdout.readline()
        except ValueError:
            continue
        return line if line else None


async def _tail(stream: asyncio.StreamReader | None, keep: bytearray) -> None:
    if stream is None:
        return
    while chunk := await stream.read(65536):
        keep += chunk
        del keep[:-TAIL]


def _reap_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
