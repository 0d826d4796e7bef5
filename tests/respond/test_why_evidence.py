"""/why tells an attempt's evidence under the line of its end (pure)."""

from promises.story import explain
from schemas.events import AttemptFailed, CommandRun, Created, Dispatched, Evidence, Refusal, Started


def test_why_shows_what_a_failed_attempt_ran_and_was_refused():
    proof = Evidence(commands=[CommandRun(command="make", exit_code=2, output="no rule")],
                     refusals=[Refusal(tool="Write", target="/etc/hosts", reason="outside the workspace")],
                     files_unknown="the attempt was stopped before it ended")
    story = explain([Created(id=3, title="build", task="code", at=10.0), Dispatched(id=3, attempt=1, at=10.5),
                     Started(id=3, attempt=1, at=11.0),
                     AttemptFailed(id=3, attempt=1, error="timed out after 60s", evidence=proof, at=71.0)])
    assert story.splitlines()[-5:] == [
        "+1m01s attempt 1 failed: timed out after 60s",
        "    exit 2   make",
        "        | no rule",
        "    files: unknown (the attempt was stopped before it ended)",
        "    refused  Write /etc/hosts: outside the workspace",
    ]
