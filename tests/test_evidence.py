"""An attempt's evidence told in words, from the recorded Evidence alone (pure)."""

from promises.evidence import brief, check_failed, last_check, lines
from schemas.events import CommandRun, Evidence, FileChange, Refusal, TokenUsage

FILES = [FileChange(path="app.py", status="modified", added=11, removed=7),
         FileChange(path="tests/test_app.py", status="added", added=30, removed=0),
         FileChange(path="logo.png", status="added")]


def test_the_chat_line_names_files_the_last_check_and_cost():
    evidence = Evidence(files=FILES, cost_usd=0.2113, commands=[
        CommandRun(command="python3 -m pytest -q", exit_code=1, check=True),
        CommandRun(command="python3 -m pytest -q", exit_code=0, check=True),
        CommandRun(command="git add -A", exit_code=0)])
    assert brief(evidence) == "3 files changed (+41 −7) · ran `python3 -m pytest -q`: exit 0 · $0.21"
    assert last_check(evidence).exit_code == 0 and check_failed(evidence) is None


def test_without_a_check_the_line_counts_commands_failures_and_refusals():
    evidence = Evidence(commands=[CommandRun(command="ls", exit_code=0), CommandRun(command="make", exit_code=2),
                                  CommandRun(command="curl x", refused="requires approval")],
                        refusals=[Refusal(tool="Write", target="/etc/x", reason="outside")])
    assert brief(evidence) == "no files changed · ran 2 commands, 1 failed · 2 refused"


def test_a_failed_last_check_is_the_verdict_and_files_unknown_are_not_claimed():
    evidence = Evidence(files_unknown="git cannot run", commands=[
        CommandRun(command="pytest -q", exit_code=1, check=True, output="1 failed, 4 passed")])
    assert check_failed(evidence).output == "1 failed, 4 passed"
    assert brief(evidence) == "ran `pytest -q`: exit 1"
    assert brief(None) == "" and lines(None) == []


def test_the_full_story_has_every_command_with_failed_and_check_output_every_file_and_refusal():
    evidence = Evidence(
        session_id="s-1", turns=3, cost_usd=0.5, tokens=TokenUsage(input=1200, output=40),
        commands=[CommandRun(command="git init -q .", exit_code=0, output="quiet"),
                  CommandRun(command="pytest -q", exit_code=1, check=True, output="F\n1 failed"),
                  CommandRun(command="rm -rf /", refused="not allowed")],
        files=FILES[:1], refusals=[Refusal(tool="Read", target="/srv/valor/var/secrets/x", reason="denied")])
    assert lines(evidence) == [
        "session s-1 · 3 turns · $0.5000 · tokens in 1,200 out 40 cache read 0 written 0",
        "exit 0   git init -q .",
        "exit 1   pytest -q   [check]",
        "    | F",
        "    | 1 failed",
        "refused  rm -rf /: not allowed",
        "files: 1 file changed (+11 −7)",
        "    modified  app.py (+11 −7)",
        "refused  Read /srv/valor/var/secrets/x: denied"]
