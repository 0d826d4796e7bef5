"""Claude Code task types against the real CLI (installed from npm) and a fake Anthropic API.

Attempts go through a real executor and the PROMISES log: work is published on
``work.code`` as the scheduler would, and the promise's story is read back.
"""

import asyncio
import inspect
import json
import time

import pytest

from schemas.commands import WorkItem
from schemas.events import AttemptFailed, Cancelled, Progress
from services.executor.claude import claude_handler
from services.executor.context import AttemptContext, TaskFailed
from tests.executor.helpers import last, names, put_work, story
from tests.fakes import ANY, error, text, tool_use
from valor import bus
from valor import config as valor_config

from .conftest import INSTALL_TIMEOUT, group_members, processes_in

# The first test here also waits for the npm install of the CLI (once per session).
pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT + 60)
INSTALL = "install it with `npm install -g @anthropic-ai/claude-code` or set VALOR_CLAUDE_BIN"


async def run(js, executor, item: WorkItem, timeout: float = 60.0):
    await put_work(js, item, queue="code")
    await executor.run_until_idle(timeout=timeout)
    return await story(js, item.id)


async def until(predicate, timeout: float = 20.0, what: str = "condition"):
    """Poll ``predicate`` (plain or async) until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        found = predicate()
        if inspect.isawaitable(found):
            found = await found
        if found:
            return found
        assert time.monotonic() < deadline, f"no {what} after {timeout}s"
        await asyncio.sleep(0.05)


async def test_a_text_answer_becomes_the_result(js, claude_env, claude_executor):
    claude_env.script(text("The answer is 42."))
    events = await run(js, claude_executor, WorkItem(id=1, attempt=1, task="code", title="Answer",
                                                     input="What is the answer?", timeout=60))
    assert names(events) == ["started", "succeeded"]
    result = events[-1].result
    assert result["text"] == "The answer is 42."
    assert result["turns"] == 1 and result["session_id"] and result["cost_usd"] > 0 and result["duration_ms"] > 0
    request = claude_env.calls()[0]
    # The code type's template, filled in, is what the model was asked.
    assert "Answer\n\nWhat is the answer?\n\nResults of the steps before this one:\n(none)" in request.last_user_text
    assert request.api_key == "sk-ant-test-not-a-real-key"
    assert "Write" in request.tool_names


async def test_a_write_tool_use_creates_the_file_in_the_workspace_and_reports_editing(
        js, claude_env, claude_executor, workspace):
    target = workspace / "hello.py"
    claude_env.script(
        tool_use("Write", {"file_path": str(target), "content": "print('hello')\n"}),
        text("Wrote hello.py"),
    )
    events = await run(js, claude_executor, WorkItem(id=2, attempt=1, task="code", title="Write hello.py",
                                                     timeout=60))
    assert names(events) == ["started", "progress", "succeeded"]
    assert target.read_text() == "print('hello')\n"
    assert [e.text for e in events if isinstance(e, Progress)] == ["Editing hello.py"]
    assert events[-1].result["text"] == "Wrote hello.py" and events[-1].result["turns"] == 2
    # The CLI ran the tool and answered the model with its result.
    assert "File created successfully" in claude_env.calls()[1].last_user_text


async def claude_running_in(workspace, fake) -> set[int]:
    """Once the CLI waits on the model: the process groups of everything running in the workspace."""
    await until(fake.calls, what="request to the fake API")
    return set((await until(lambda: processes_in(workspace), what="claude process")).values())


async def test_a_timeout_kills_the_cli_and_leaves_no_process_behind(js, claude_env, claude_executor, workspace):
    claude_env.script(text("too late", delay=60))
    await put_work(js, WorkItem(id=3, attempt=1, task="code", title="Slow", timeout=4), queue="code")
    groups = await claude_running_in(workspace, claude_env)
    failed = await until(lambda: last(js, 3, "attempt_failed"), timeout=15, what="attempt_failed")
    assert isinstance(failed, AttemptFailed)
    assert (failed.error, failed.retryable) == ("timed out after 4s", True)
    assert processes_in(workspace) == {}
    assert all(group_members(g) == [] for g in groups)
    await claude_executor.run_until_idle()


async def test_a_cancel_kills_the_cli_and_leaves_no_process_behind(js, claude_env, claude_executor, workspace):
    claude_env.script(text("too late", delay=60))
    await put_work(js, WorkItem(id=4, attempt=1, task="code", title="Slow", timeout=60), queue="code")
    groups = await claude_running_in(workspace, claude_env)
    await bus.publish_event(js, Cancelled(id=4, reason="user asked", by="test"), "4:cancelled")
    await claude_executor.run_until_idle(timeout=15)
    assert processes_in(workspace) == {}
    assert all(group_members(g) == [] for g in groups)
    assert names(await story(js, 4)) == ["started", "cancelled", "attempt_stopped"]


async def test_a_code_review_runs_read_only_a_write_is_refused_and_it_still_answers(claude_env, config, workspace):
    target = workspace / "fixed.py"
    claude_env.script(
        tool_use("Write", {"file_path": str(target), "content": "oops\n"}),
        text("auth.py: no SQL injection found."),
    )
    seen: list[str] = []

    async def progress(text, fraction=None):
        seen.append(text)

    handler = claude_handler("code_review", config.types["code_review"], config)
    ctx = AttemptContext(id=5, attempt=1, task="code_review", title="auth.py", input="Look for SQL injection.",
                         _progress=progress)
    result = await handler(ctx)
    assert result["text"] == "auth.py: no SQL injection found."
    assert not target.exists() and list(workspace.iterdir()) == []
    first, second = claude_env.calls()
    assert "Review, without changing anything: auth.py\n\nLook for SQL injection." in first.last_user_text
    [refused] = second.tool_results
    assert refused["is_error"] is True and "plan mode" in str(refused["content"])


async def test_an_api_error_the_cli_gives_up_on_fails_the_attempt_with_its_text(js, claude_env, claude_executor):
    claude_env.script(error(400, "invalid_request_error", "prompt is too long: 300000 tokens > 200000 maximum",
                            when=ANY))
    events = await run(js, claude_executor, WorkItem(id=6, attempt=1, task="search", title="x", timeout=60))
    assert names(events) == ["started", "attempt_failed"]
    # The CLI's own text for it, as its result line says.
    assert events[-1].error.startswith("Prompt is too long"), events[-1].error
    assert events[-1].retryable is True


async def test_a_missing_cli_is_a_failure_for_good_that_says_how_to_install(js, claude_executor, tmp_path,
                                                                             monkeypatch):
    monkeypatch.setenv("VALOR_CLAUDE_BIN", str(tmp_path / "no-claude"))
    events = await run(js, claude_executor, WorkItem(id=7, attempt=1, task="code", title="x"))
    assert names(events) == ["started", "attempt_failed"]
    failed = events[-1]
    assert failed.error == f"Claude Code CLI not found (looked for $VALOR_CLAUDE_BIN={tmp_path}/no-claude): {INSTALL}"
    assert failed.retryable is False


async def test_progress_is_throttled_and_a_held_back_step_is_shown_while_the_cli_waits(claude_env, config, workspace):
    workspace.mkdir(parents=True)
    (workspace / "auth.py").write_text("SECRET = 1\n")
    claude_env.script(
        tool_use("Read", {"file_path": str(workspace / "auth.py")}),
        tool_use("Grep", {"pattern": "SECRET"}),
        tool_use("Glob", {"pattern": "**/*.py"}),
        text("Found it.", delay=1.5),
    )
    seen: list[tuple[float, str]] = []

    async def progress(text, fraction=None):
        seen.append((time.monotonic(), text))

    handler = claude_handler("analysis", config.types["analysis"], config)
    result = await handler(AttemptContext(id=8, attempt=1, task="analysis", title="Where is SECRET?",
                                          _progress=progress))
    assert result["text"] == "Found it."
    # Grep came within a second of Read and was superseded by Glob, shown once its second was up.
    assert [t for _, t in seen] == ["Reading auth.py", "Searching **/*.py"]
    assert seen[1][0] - seen[0][0] >= 1.0


async def test_writes_outside_the_workspace_and_reads_of_valor_secrets_are_refused_and_leave_nothing(
        claude_env, tmp_path, monkeypatch):
    # Valor runs from its own directory, whose var/ and .env hold its secrets; the workspace is var/workspace,
    # as shipped.
    home = tmp_path / "valor"
    config = valor_config.parse('workspace = "var/workspace"\n')
    workspace = home / "var" / "workspace"
    (home / "var" / "secrets").mkdir(parents=True)
    password = home / "var" / "secrets" / "nats-executor.password"
    password.write_text("SECRET-NATS-PASSWORD\n")
    (home / ".env").write_text("VALOR_TG_BOT_TOKEN=SECRET-BOT-TOKEN\n")
    monkeypatch.chdir(home)
    monkeypatch.setenv("VALOR_NATS_PASSWORD_FILE", str(password))
    monkeypatch.setenv("VALOR_TG_API_HASH", "SECRET-API-HASH")
    claude_env.script(
        tool_use("Bash", {"command": "mkdir -p src && echo 'x = 1' > src/ok.py && cat src/ok.py",
                          "description": "work"}),
        tool_use("Read", {"file_path": str(workspace / "src" / "ok.py")}),
        tool_use("Bash", {"command": f"echo pwned > {tmp_path}/outside.txt", "description": "escape"}),
        tool_use("Bash", {"command": f"cat {password} {home}/.env", "description": "steal"}),
        tool_use("Bash", {"command": "curl -sS -m 5 http://example.com -o /dev/null; echo done",
                          "description": "phone home"}),
        tool_use("Read", {"file_path": str(password)}),
        tool_use("Write", {"file_path": str(tmp_path / "outside2.txt"), "content": "pwned"}),
        tool_use("Bash", {"command": "env | grep -E '^(VALOR_|ANTHROPIC_API_KEY)' | cut -d= -f1",
                           "description": "look around"}),
        text("I tried."),
    )
    ctx = AttemptContext(id=9, attempt=1, task="code", title="Misbehave")
    result = await claude_handler("code", config.types["code"], config)(ctx)
    assert result["text"] == "I tried."
    assert not (tmp_path / "outside.txt").exists() and not (tmp_path / "outside2.txt").exists()
    work, escape, steal, phone, env = ctx.evidence.commands
    assert (work.exit_code, work.output.splitlines()[-1]) == (0, "x = 1")  # the workspace is writable
    assert escape.exit_code == 1 and "Read-only file system" in escape.output
    assert steal.exit_code == 1 and "No such file or directory" in steal.output
    assert (env.exit_code, env.output.splitlines()[-1]) == (0, "ANTHROPIC_API_KEY")  # the task's key, no Valor's
    assert [(r.tool, r.target) for r in ctx.evidence.refusals] == [
        ("Bash", phone.command), ("Read", str(password)), ("Write", str(tmp_path / "outside2.txt"))]
    assert "example.com" in ctx.evidence.refusals[0].reason  # the network beyond the type's domains
    assert [(f.path, f.status) for f in ctx.evidence.files] == [("src/ok.py", "added")]
    # No secret ever reached the model: not in a tool result, not in the environment it was shown.
    seen = "".join(json.dumps(r.body) for r in claude_env.requests)
    assert "SECRET-" not in seen
    # The refusals reached the model as tool errors.
    for refusal in ("outside.txt: Read-only file system", "denied by your permission settings",
                    "outside2.txt, but you haven't granted it yet"):
        assert refusal in seen, refusal


async def test_a_type_that_fails_on_a_failed_check_fails_the_attempt_for_good_with_its_evidence(
        claude_env, workspace):
    config = valor_config.parse(f'workspace = "{workspace}"\n[types.code]\nfailed_check = "fail"\n'
                                "checks = 'run-checks'\n")
    claude_env.script(tool_use("Bash", {"command": "echo 2 failed; exit 3 # run-checks", "description": "check"}),
                      text("All good!"))
    ctx = AttemptContext(id=10, attempt=1, task="code", title="Check")
    with pytest.raises(TaskFailed) as failed:
        await claude_handler("code", config.types["code"], config)(ctx)
    assert (failed.value.error, failed.value.retryable) == (
        "the check `echo 2 failed; exit 3 # run-checks` exited 3", False)
    [check] = ctx.evidence.commands
    assert check.check and check.exit_code == 3 and check.output.endswith("2 failed")
