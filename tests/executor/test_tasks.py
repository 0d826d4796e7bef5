"""Built-in task types, called directly with an AttemptContext (no NATS needed)."""

import pytest

from services.executor import tasks
from services.executor.context import AttemptContext, TaskFailed
from services.executor.shell import run_shell


def ctx(task: str, input=None, attempt: int = 1, deps=None) -> AttemptContext:
    return AttemptContext(id=1, attempt=attempt, task=task, input=input, deps=deps or {})


async def test_shell_refuses_argv0_outside_allowlist(monkeypatch):
    monkeypatch.setenv("VALOR_SHELL_ALLOW", "echo,true")
    with pytest.raises(TaskFailed) as err:
        await run_shell(ctx("shell", {"argv": ["rm", "-rf", "/tmp/x"]}))
    assert err.value.error == "program 'rm' is not allowed; allowed: echo, true"
    assert err.value.retryable is False


async def test_shell_refuses_a_shell_string():
    with pytest.raises(TaskFailed) as err:
        await run_shell(ctx("shell", {"argv": "echo hi; rm -rf /"}))
    assert err.value.error == "shell argv must be a list of strings, not a shell string"
    assert err.value.retryable is False


async def test_shell_refuses_a_path_unless_that_exact_path_is_allowed(monkeypatch):
    monkeypatch.setenv("VALOR_SHELL_ALLOW", "echo,/bin/true")
    with pytest.raises(TaskFailed, match="program '/tmp/echo' is not allowed"):
        await run_shell(ctx("shell", {"argv": ["/tmp/echo", "hi"]}))
    result = await run_shell(ctx("shell", {"argv": ["/bin/true"]}))
    assert result["exit_code"] == 0


async def test_shell_returns_exit_code_and_output_tails(tmp_path, monkeypatch):
    monkeypatch.setenv("VALOR_SHELL_ALLOW", "python3")
    result = await run_shell(ctx("shell", {"argv": ["python3", "-c", "print('x' * 5000)"], "cwd": str(tmp_path)}))
    assert result["exit_code"] == 0
    assert result["stdout_tail"] == ("x" * 5000 + "\n")[-4096:]
    assert result["stderr_tail"] == ""


async def test_shell_nonzero_exit_fails_without_retry_naming_code_and_stderr(monkeypatch):
    monkeypatch.setenv("VALOR_SHELL_ALLOW", "python3")
    with pytest.raises(TaskFailed) as err:
        await run_shell(ctx("shell", {"argv": ["python3", "-c", "import sys; sys.exit('boom')"]}))
    assert err.value.error == "exit code 1: boom"
    assert err.value.retryable is False


async def test_echo_returns_input_and_dependency_results():
    assert await tasks.echo(ctx("echo", {"a": 1}, deps={"7": "seven"})) == {"input": {"a": 1}, "deps": {"7": "seven"}}


@pytest.mark.parametrize(
    "attempt, times, retryable, outcome",
    [(1, 2, True, "fails"), (2, 2, True, "fails"), (3, 2, True, {"attempts": 3}), (1, 1, False, "fails"), (1, 0, True, {"attempts": 1})],
)
async def test_fail_task_fails_while_attempt_is_within_its_failures(attempt, times, retryable, outcome):
    c = ctx("fail", {"times": times, "retryable": retryable}, attempt=attempt)
    if outcome == "fails":
        with pytest.raises(TaskFailed) as err:
            await tasks.fail(c)
        assert err.value.retryable is retryable
    else:
        assert await tasks.fail(c) == outcome


async def test_sleep_reports_progress_and_returns_seconds():
    seen = []

    async def progress(text, fraction=None):
        seen.append(fraction)

    c = AttemptContext(id=1, attempt=1, task="sleep", input={"seconds": 0.3}, _progress=progress)
    assert await tasks.sleep(c) == {"slept": 0.3}
    # One report per 0.1 s step at most; fewer when a busy machine stretches a step.
    assert 1 <= len(seen) <= 3 and seen == sorted(seen) and all(0 <= f < 1 for f in seen)


async def test_sleep_refuses_a_negative_duration():
    with pytest.raises(TaskFailed, match="non-negative number"):
        await tasks.sleep(ctx("sleep", {"seconds": -1}))


async def test_sleep_takes_a_bare_number_as_seconds():
    assert await tasks.sleep(ctx("sleep", "0.05")) == {"slept": 0.05}
    assert await tasks.sleep(ctx("sleep", 0)) == {"slept": 0}
