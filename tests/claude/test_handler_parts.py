"""The handler's pure parts: the prompt, the command line, the environment, errors (no CLI needed)."""

import re
from pathlib import Path

import pytest

from services.executor.claude import (
    claude_handler,
    command,
    environment,
    find_cli,
    finish,
    render_deps,
    render_prompt,
)
from services.executor.context import AttemptContext, TaskFailed
from services.executor.sandbox import Places
from services.executor.streamjson import Outcome, Stream
from valor import config as valor_config
from valor.config import TaskType

INSTALL = "install it with `npm install -g @anthropic-ai/claude-code` or set VALOR_CLAUDE_BIN"


def test_prompt_fills_title_input_deps_and_workspace():
    template = "{title}\n\n{input}\n\nBefore:\n{deps}\n\nIn {workspace}"
    prompt = render_prompt(template, "Fix login", "The form 500s.", {"12": {"text": "Found the bug."}}, "/w")
    assert prompt == "Fix login\n\nThe form 500s.\n\nBefore:\n#12: Found the bug.\n\nIn /w"


def test_prompt_pretty_prints_structured_input_and_leaves_other_braces_alone():
    prompt = render_prompt('{title}: {input} {"keep": 1} {unknown}', "T", {"files": ["a.py"]}, {}, "/w")
    assert prompt == 'T: {\n  "files": [\n    "a.py"\n  ]\n} {"keep": 1} {unknown}'


def test_prompt_without_input_or_deps():
    assert render_prompt("{title}|{input}|{deps}", "", None, {}, "/w") == "||(none)"


def test_deps_read_one_per_line_in_id_order_text_results_as_text_others_as_json():
    deps = {"12": "plain", "3": {"text": "a Claude result", "cost_usd": 0.1}, "7": {"exit_code": 0},
            "20": None, "100": [1, 2]}
    assert render_deps(deps) == ('#3: a Claude result\n#7: {"exit_code": 0}\n#12: plain\n'
                                 '#20: (no result)\n#100: [1, 2]')


def test_a_huge_dependency_result_is_cut_so_the_prompt_stays_one_argument():
    text = render_deps({"1": "x" * 50_000})
    assert len(text) < 20_100 and text.endswith(" … (truncated)")


def test_command_has_the_type_permission_mode_and_tools_and_ends_with_the_prompt():
    review = valor_config.DEFAULT.types["code_review"]
    assert command("/bin/claude", "-x review", review) == [
        "/bin/claude", "-p", "--output-format", "stream-json", "--verbose", "--permission-mode", "plan",
        "--allowedTools", "Read", "Grep", "Glob", "--", "-x review"]
    assert command("claude", "hi", TaskType()) == [
        "claude", "-p", "--output-format", "stream-json", "--verbose", "--", "hi"]


def test_a_continuation_resumes_its_session_in_one_argument_before_the_prompt():
    assert command("claude", "add a test", valor_config.DEFAULT.types["code"], "6f1c2d9e-1") == [
        "claude", "-p", "--output-format", "stream-json", "--verbose", "--resume=6f1c2d9e-1",
        "--permission-mode", "acceptEdits", "--", "add a test"]


def places(tmp_path: Path) -> Places:
    return Places(workspace=tmp_path / "ws", valor_home=tmp_path / "valor", home=tmp_path / "home",
                  cache=tmp_path / "valor/var/cache/k")


def test_environment_passes_the_api_key_and_no_valor_secret_and_turns_background_traffic_off(tmp_path):
    env = environment(places(tmp_path), {
        "ANTHROPIC_API_KEY": "k", "ANTHROPIC_BASE_URL": "http://x", "HOME": str(tmp_path), "DISABLE_TELEMETRY": "0",
        "VALOR_NATS_PASSWORD_FILE": "/v/var/secrets/p", "VALOR_TG_API_HASH": "h", "VALOR_TG_BOT_TOKEN": "t",
        "NATS_PASSWORD": "p", "AWS_SECRET_ACCESS_KEY": "s", "GITHUB_TOKEN": "g"})
    cache = str(tmp_path / "valor/var/cache/k")
    assert env == {"ANTHROPIC_API_KEY": "k", "ANTHROPIC_BASE_URL": "http://x", "HOME": str(tmp_path),
                   "DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1",
                   "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                   "PIP_CACHE_DIR": f"{cache}/pip", "npm_config_cache": f"{cache}/npm"}


def test_environment_gives_a_private_config_dir_only_when_home_is_not_writable(tmp_path):
    assert "CLAUDE_CONFIG_DIR" in environment(places(tmp_path), {"HOME": str(tmp_path / "missing")})
    kept = environment(places(tmp_path), {"HOME": "/nonexistent", "CLAUDE_CONFIG_DIR": "/c"})
    assert kept["CLAUDE_CONFIG_DIR"] == "/c"


def test_a_missing_binary_named_by_the_environment_says_so_and_how_to_install(tmp_path):
    with pytest.raises(TaskFailed) as err:
        find_cli({"VALOR_CLAUDE_BIN": str(tmp_path / "claude"), "PATH": "/usr/bin"})
    assert err.value.error == f"Claude Code CLI not found (looked for $VALOR_CLAUDE_BIN={tmp_path}/claude): {INSTALL}"
    assert err.value.retryable is False


def test_a_missing_binary_on_path_says_so_and_how_to_install(tmp_path):
    with pytest.raises(TaskFailed) as err:
        find_cli({"PATH": str(tmp_path)})
    assert err.value.error == f"Claude Code CLI not found (looked for `claude` on PATH): {INSTALL}"
    assert err.value.retryable is False


def test_the_binary_is_found_on_path(tmp_path):
    binary = tmp_path / "claude"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert find_cli({"PATH": f"/nonexistent:{tmp_path}"}) == str(binary)
    assert find_cli({"VALOR_CLAUDE_BIN": str(binary)}) == str(binary)


async def test_the_handler_fails_for_good_without_the_cli_and_creates_the_workspace(tmp_path, monkeypatch):
    monkeypatch.delenv("VALOR_CLAUDE_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    config = valor_config.parse(f'workspace = "{tmp_path}/ws"\n')
    handler = claude_handler("code", config.types["code"], config)
    with pytest.raises(TaskFailed) as err:
        await handler(AttemptContext(id=1, attempt=1, task="code", title="t"))
    assert err.value.retryable is False and "npm install -g @anthropic-ai/claude-code" in err.value.error
    assert not Path(tmp_path / "ws").exists()  # nothing touched before the CLI is known


@pytest.mark.parametrize("stream, code, stderr, error, retryable", [
    (Stream(outcome=Outcome(text="Not logged in · Please run /login", is_error=True)), 1, "",
     "Not logged in · Please run /login", False),
    (Stream(outcome=Outcome(text="API Error: 529 overloaded", is_error=True)), 1, "",
     "API Error: 529 overloaded", True),
    (Stream(outcome=Outcome(text="", is_error=True, subtype="error_during_execution")), 1, "",
     "error_during_execution", True),
    (Stream(outcome=Outcome(text="error during execution", is_error=True, subtype="error_during_execution")), 1,
     "Error: sandbox required but unavailable: bubblewrap (bwrap) not installed\n",
     "Error: sandbox required but unavailable: bubblewrap (bwrap) not installed", False),
    (Stream(), 1, "error: unknown option '--bogus'\n", "Claude Code exited with code 1: error: unknown option '--bogus'",
     False),
    (Stream(), 1, "--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons\n",
     "Claude Code exited with code 1: --dangerously-skip-permissions cannot be used with root/sudo privileges "
     "for security reasons", False),
    (Stream(), 1, "", "Claude Code exited with code 1", True),
    (Stream(), -9, "", "Claude Code exited with code -9", True),
    (Stream(last_text="half an answer"), 0, "", "Claude Code ended without a result: half an answer", True),
])
def test_a_run_without_a_good_result_fails_with_the_cli_error_retryable_unless_auth_or_usage(
        stream, code, stderr, error, retryable):
    with pytest.raises(TaskFailed) as err:
        finish(stream, code, stderr)
    assert (err.value.error, err.value.retryable) == (error, retryable)


def test_a_successful_result_wins_over_an_odd_exit_code():
    stream = Stream(outcome=Outcome(text="done", is_error=False, session_id="s"))
    assert finish(stream, 1, "noise")["text"] == "done"


@pytest.mark.parametrize("command, check", [
    ("python3 -m pytest -q", True),
    (".venv/bin/python -m unittest -v test_app", True),
    ("python3 tests.py", True),
    ("cd app && python tests/test_api.py", True),
    ("npm test", True), ("npm run test -- --watch=false", True), ("cargo test", True), ("go test ./...", True),
    ("make test", True), ("tox -e py311", True),
    ("printf 'import unittest' > test_app.py", False),  # writing a test is not running one
    ("cat test_app.py", False), ("git add tests/", False), ("pip install pytest-cov", False),
    ("python3 -m venv .venv", False),
])
def test_the_default_checks_are_test_runs_not_commands_that_mention_tests(command, check):
    assert bool(re.search(valor_config.DEFAULT.types["code"].checks, command)) == check
