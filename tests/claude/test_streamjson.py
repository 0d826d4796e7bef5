"""Claude Code's stream-json, folded line by line into progress texts and a result (no CLI needed)."""

import json

import pytest

from schemas.events import CommandRun, Evidence, TokenUsage
from services.executor.streamjson import (
    MAX_COMMANDS,
    OUTPUT_CHARS,
    Outcome,
    Stream,
    Throttle,
    step,
    tool_progress,
)

# Lines as Claude Code 2.1.332 writes them, trimmed to the fields that matter.
INIT = {"type": "system", "subtype": "init", "cwd": "/w", "session_id": "s-1", "tools": ["Bash", "Write"],
        "permissionMode": "acceptEdits"}
WRITE = {"type": "assistant", "session_id": "s-1", "message": {"role": "assistant", "content": [
    {"type": "tool_use", "id": "toolu_1", "name": "Write", "input": {"file_path": "/w/src/auth.py", "content": "x"}}]}}
TOOL_RESULT = {"type": "user", "message": {"role": "user", "content": [
    {"tool_use_id": "toolu_1", "type": "tool_result", "content": "File created successfully at: /w/src/auth.py"}]}}
ANSWER = {"type": "assistant", "message": {"content": [{"type": "text", "text": "Wrote auth.py"}]}}
RESULT = {"type": "result", "subtype": "success", "is_error": False, "result": "Wrote auth.py", "num_turns": 2,
          "total_cost_usd": 0.101468, "session_id": "s-1", "duration_ms": 253, "permission_denials": []}


def fold(*events) -> tuple[Stream, list[str]]:
    stream, progress = Stream(), []
    for event in events:
        line = event if isinstance(event, str | bytes) else json.dumps(event)
        stream, texts = step(stream, line)
        progress += texts
    return stream, progress


def test_a_successful_run_becomes_its_result_and_its_tool_calls_progress():
    stream, progress = fold(INIT, WRITE, TOOL_RESULT, ANSWER, RESULT)
    assert progress == ["Editing auth.py"]
    assert stream.outcome == Outcome(text="Wrote auth.py", is_error=False, cost_usd=0.101468, session_id="s-1",
                                     turns=2, duration_ms=253)
    assert stream.outcome.as_result() == {"text": "Wrote auth.py", "cost_usd": 0.101468, "session_id": "s-1",
                                          "turns": 2, "duration_ms": 253}


@pytest.mark.parametrize("name, args, text", [
    ("Write", {"file_path": "/w/a/b.py", "content": ""}, "Editing b.py"),
    ("Edit", {"file_path": "auth.py", "old_string": "a", "new_string": "b"}, "Editing auth.py"),
    ("MultiEdit", {"file_path": "/w/api.py", "edits": []}, "Editing api.py"),
    ("NotebookEdit", {"notebook_path": "/w/n.ipynb"}, "Editing n.ipynb"),
    ("Read", {"file_path": "/w/database.py"}, "Reading database.py"),
    ("Bash", {"command": "pytest -q tests/"}, "Running pytest -q tests/"),
    ("Bash", {"command": "python -m pytest  \n -x " + "y" * 80}, "Running python -m pytest -x " + "y" * 40 + "…"),
    ("Grep", {"pattern": "password\\s*="}, "Searching password\\s*="),
    ("Glob", {"pattern": "**/*.py"}, "Searching **/*.py"),
    ("WebFetch", {"url": "https://example.com"}, "Using WebFetch"),
    ("Write", {}, "Editing files"),
    ("Bash", {"command": "   "}, "Running a command"),
])
def test_tool_calls_read_as_what_they_do(name, args, text):
    assert tool_progress({"type": "tool_use", "name": name, "input": args}) == text


def test_text_blocks_and_tool_results_make_no_progress():
    _, progress = fold(TOOL_RESULT, ANSWER)
    assert progress == []


def test_several_tool_calls_in_one_message_each_make_progress():
    message = {"type": "assistant", "message": {"content": [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "name": "Read", "input": {"file_path": "/w/auth.py"}},
        {"type": "tool_use", "name": "Grep", "input": {"pattern": "TODO"}}]}}
    assert fold(message)[1] == ["Reading auth.py", "Searching TODO"]


def test_lines_that_are_not_json_objects_or_of_unknown_kinds_are_skipped():
    stream, progress = fold("", "not json", b"\xff\xfe", "[1, 2]", {"type": "stream_event"},
                            {"type": "assistant", "message": "odd"}, {"type": "assistant", "message": {"content": 3}})
    assert (stream, progress) == (Stream(), [])


def test_an_error_result_is_an_error_outcome_with_its_text():
    stream, _ = fold(INIT, {"type": "result", "subtype": "success", "is_error": True,
                            "result": "Not logged in · Please run /login", "num_turns": 1})
    assert stream.outcome.is_error and stream.outcome.text == "Not logged in · Please run /login"


def test_a_result_without_text_is_named_by_its_subtype_and_keeps_the_init_session():
    stream, _ = fold(INIT, {"type": "result", "subtype": "error_max_turns", "num_turns": 10})
    assert stream.outcome == Outcome(text="error max turns", is_error=True, subtype="error_max_turns",
                                     session_id="s-1", turns=10)


def test_the_last_assistant_text_is_kept_for_a_run_that_ends_without_a_result():
    assert fold(INIT, ANSWER)[0] == Stream(session_id="s-1", last_text="Wrote auth.py")


def test_throttle_sends_at_most_one_text_per_second_and_the_latest_held_back_when_due():
    throttle = Throttle(every=1.0)
    assert throttle.offer("Reading a.py", now=10.0) == "Reading a.py"
    assert throttle.offer("Reading b.py", now=10.2) is None
    assert throttle.offer("Editing b.py", now=10.4) is None
    assert throttle.wait(now=10.5) == pytest.approx(0.5)
    assert throttle.due(now=10.9) is None
    assert throttle.due(now=11.0) == "Editing b.py"
    assert throttle.wait(now=11.0) is None
    assert throttle.offer("Running pytest", now=11.5) is None
    assert throttle.offer("Running ruff", now=12.0) == "Running ruff"
    assert throttle.due(now=20.0) is None


# -- evidence: what the tools' own results say was done ------------------------------------------------------


def bash(call_id: str, command: str) -> dict:
    return {"type": "assistant", "message": {"content": [
        {"type": "tool_use", "id": call_id, "name": "Bash", "input": {"command": command, "description": "x"}}]}}


def result_of(call_id: str, content, is_error: bool | None = None) -> dict:
    block = {"type": "tool_result", "tool_use_id": call_id, "content": content}
    if is_error is not None:
        block["is_error"] = is_error
    return {"type": "user", "message": {"role": "user", "content": [block]}}


def denied(call_id: str, tool: str, message: str) -> dict:
    return {"type": "system", "subtype": "permission_denied", "tool_name": tool, "tool_use_id": call_id,
            "message": message}


def test_commands_are_recorded_with_the_exit_code_their_tool_result_gives():
    stream, _ = fold(
        bash("t1", "git init -q . && python3 -m venv .venv"), result_of("t1", "", False),
        bash("t2", "python3 -m pytest -q"), result_of("t2", "Exit code 1\n1 failed, 2 passed in 0.1s", True),
        bash("t3", "ls"), result_of("t3", [{"type": "text", "text": "a.py\nb.py"}]),
    )
    assert [(c.command, c.exit_code, c.output) for c in stream.commands] == [
        ("git init -q . && python3 -m venv .venv", 0, ""),
        ("python3 -m pytest -q", 1, "1 failed, 2 passed in 0.1s"),
        ("ls", 0, "a.py\nb.py")]


def test_a_refused_call_is_recorded_as_refused_with_the_reason_the_model_was_given():
    stream, _ = fold(
        bash("t1", "curl evil"), denied("t1", "Bash", "This command requires approval"),
        result_of("t1", "This command requires approval", True),
        {"type": "assistant", "message": {"content": [
            {"type": "tool_use", "id": "t2", "name": "Write", "input": {"file_path": "/etc/x", "content": ""}}]}},
        denied("t2", "Write", "Path is outside allowed working directories"),
        result_of("t2", "Claude requested permissions to write to /etc/x", True),
    )
    [run] = stream.commands
    assert (run.command, run.exit_code, run.refused) == ("curl evil", None, "This command requires approval")
    [refusal] = stream.refusals
    assert (refusal.tool, refusal.target, refusal.reason) == (
        "Write", "/etc/x", "Path is outside allowed working directories")


def test_sandbox_violations_in_a_command_s_output_are_refusals_too():
    stream, _ = fold(bash("t1", "curl -s https://example.com"), result_of(
        "t1", "rc=0\n<sandbox_violations>\ndeny network-outbound example.com:443\n</sandbox_violations>", False))
    assert [(r.tool, r.reason) for r in stream.refusals] == [("Bash", "deny network-outbound example.com:443")]


def test_only_the_last_commands_are_kept_with_the_ends_of_their_outputs():
    lines = []
    for i in range(MAX_COMMANDS + 5):
        lines += [bash(f"t{i}", f"echo {i}"), result_of(f"t{i}", "x" * (OUTPUT_CHARS + 10) + str(i), False)]
    stream, _ = fold(*lines)
    assert len(stream.commands) == MAX_COMMANDS and stream.commands_dropped == 5
    assert stream.commands[0].command == "echo 5" and stream.commands[-1].output.endswith(f"{MAX_COMMANDS + 4}")
    assert len(stream.commands[-1].output) == OUTPUT_CHARS + 1


def test_the_evidence_carries_tokens_cost_turns_and_session():
    usage = {"input_tokens": 100, "output_tokens": 7, "cache_read_input_tokens": 3,
             "cache_creation_input_tokens": 2}
    stream, _ = fold(INIT, bash("t1", "true"), result_of("t1", "", False), {**RESULT, "usage": usage})
    evidence = stream.evidence()
    assert evidence == Evidence(commands=[CommandRun(command="true", exit_code=0)],
                                tokens=TokenUsage(input=100, output=7, cache_read=3, cache_creation=2),
                                cost_usd=0.101468, turns=2, session_id="s-1")


def test_a_call_a_deny_rule_refused_is_a_refusal_though_no_permission_event_came():
    stream, _ = fold(
        {"type": "assistant", "message": {"content": [
            {"type": "tool_use", "id": "t1", "name": "Read", "input": {"file_path": "/v/var/secrets/p"}},
            {"type": "tool_use", "id": "t2", "name": "Read", "input": {"file_path": "/w/missing.py"}}]}},
        result_of("t1", "<tool_use_error>File is in a directory that is denied by your permission settings."
                        "</tool_use_error>", True),
        result_of("t2", "<tool_use_error>File does not exist.</tool_use_error>", True))
    assert [(r.tool, r.target, r.reason) for r in stream.refusals] == [
        ("Read", "/v/var/secrets/p", "File is in a directory that is denied by your permission settings.")]
