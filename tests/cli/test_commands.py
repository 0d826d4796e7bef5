"""The `valor` CLI contract (issue 2, point 7) against a real scheduler and executor."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from schemas import subjects
from schemas.events import MessageReceived, encode
from valor import bus
from valor.cli import main
from valor.client import ValorClient
from valor.natsserver import free_port

from .conftest import EXECUTOR_ID


def submit(valor, *args: str) -> int:
    result = valor("submit", *args)
    assert result.exit_code == 0, result.output
    return int(result.stdout)


def show_json(valor, promise_id: int) -> dict:
    result = valor("show", str(promise_id), "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def wait_ok(valor, *ids: int) -> None:
    result = valor("wait", *map(str, ids), "--timeout", "15")
    assert result.exit_code == 0, result.output


def listed(valor, *args: str) -> list[dict]:
    result = valor("list", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# --- submit and show ------------------------------------------------------------------------


def test_submit_prints_only_the_new_id(valor):
    result = valor("submit", "--type", "echo", "--input", '{"x": 1}', "hello")
    assert result.exit_code == 0
    assert re.fullmatch(r"[0-9]+\n", result.stdout)
    assert result.stderr == ""


def test_submit_with_bad_input_json_exits_2_saying_why(valor):
    result = valor("submit", "--type", "echo", "--input", "{bad", "t")
    assert result.exit_code == 2
    assert "--input" in result.stderr and "not valid JSON" in result.stderr
    assert result.stdout == ""


def test_show_json_of_an_echo_task_has_its_result_and_events(valor):
    pid = submit(valor, "--type", "echo", "--input", '{"x": 1}', "hello")
    wait_ok(valor, pid)
    shown = show_json(valor, pid)
    assert {"id", "type", "state", "attempts", "result", "depends_on", "events"} <= shown.keys()
    assert shown["id"] == pid and shown["type"] == "echo" and shown["state"] == "succeeded"
    assert shown["attempts"] == 1
    assert shown["result"] == {"input": {"x": 1}, "deps": {}}
    assert shown["depends_on"] == []
    types = [e["type"] for e in shown["events"]]
    assert types == ["created", "dispatched", "started", "succeeded"]
    assert all(isinstance(e["at"], float) for e in shown["events"])


def test_show_for_people_has_a_headline_a_timeline_and_the_dependency_tree(valor):
    parent = submit(valor, "--type", "echo", "parent")
    child = submit(valor, "--type", "echo", "--after", str(parent), "child")
    wait_ok(valor, child)
    text = valor("show", str(parent)).stdout
    assert text.splitlines()[0] == f'#{parent} echo "parent" succeeded after 1 attempt'
    assert re.search(r"\+\d+\.\d{3}s dispatched attempt 1", text)  # a busy machine may take over a second
    assert f'#{child} succeeded echo "child"' in text
    child_text = valor("show", str(child)).stdout
    assert f'#{parent} succeeded echo "parent"' in child_text
    assert show_json(valor, child)["depends_on"] == [parent]
    assert show_json(valor, parent)["dependents"] == [child]


def test_show_of_an_unknown_id_exits_1_with_a_message(valor):
    result = valor("show", "99999")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "valor: no promise #99999\n"


# --- plans -------------------------------------------------------------------------------------


def plan_ids(result) -> dict[str, int]:
    assert result.exit_code == 0, result.output
    pairs = [line.split() for line in result.stdout.splitlines()]
    return {name: int(pid) for name, pid in pairs}


def test_a_json_plan_with_a_join_passes_the_parents_results(valor):
    plan = {"tasks": [
        {"name": "left", "type": "echo", "input": {"n": 1}},
        {"name": "right", "type": "echo", "input": {"n": 2}},
        {"name": "join", "type": "echo", "input": "both", "after": ["left", "right"]},
    ]}
    result = valor("plan", "-", input=json.dumps(plan))
    ids = plan_ids(result)
    assert list(ids) == ["left", "right", "join"]
    wait_ok(valor, ids["join"])
    deps = show_json(valor, ids["join"])["result"]["deps"]
    assert deps == {str(ids["left"]): {"input": {"n": 1}, "deps": {}},
                    str(ids["right"]): {"input": {"n": 2}, "deps": {}}}


def test_a_toml_plan_file_works_like_json(valor, tmp_path: Path):
    path = tmp_path / "plan.toml"
    path.write_text('''
[[tasks]]
name = "setup"
type = "echo"
input = {step = 1}
title = "set things up"

[[tasks]]
name = "run"
type = "echo"
after = ["setup"]
priority = 2
''')
    ids = plan_ids(valor("plan", str(path)))
    assert list(ids) == ["setup", "run"]
    wait_ok(valor, ids["run"])
    run = show_json(valor, ids["run"])
    assert run["priority"] == 2 and run["depends_on"] == [ids["setup"]]
    assert run["result"]["deps"] == {str(ids["setup"]): {"input": {"step": 1}, "deps": {}}}
    assert show_json(valor, ids["setup"])["title"] == "set things up"


def test_a_plan_with_a_cycle_names_it_and_creates_nothing(valor):
    before = len(listed(valor))
    plan = {"tasks": [{"name": "a", "after": ["c"]}, {"name": "b", "after": ["a"]}, {"name": "c", "after": ["b"]}]}
    result = valor("plan", "-", input=json.dumps(plan))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "valor: the plan has a cycle: a -> c -> b -> a\n"
    assert len(listed(valor)) == before


def test_a_plan_naming_an_unknown_task_names_it_and_creates_nothing(valor):
    before = len(listed(valor))
    plan = {"tasks": [{"name": "a"}, {"name": "b", "after": ["a", "ghost"]}]}
    result = valor("plan", "-", input=json.dumps(plan))
    assert result.exit_code == 1
    assert result.stderr == "valor: task 'b' is after unknown task 'ghost'\n"
    assert len(listed(valor)) == before


def test_a_plan_with_an_unknown_key_is_refused_naming_the_key(valor):
    result = valor("plan", "-", input='{"tasks": [{"name": "a", "afterr": []}]}')
    assert result.exit_code == 2
    assert "unknown field `afterr`" in result.stderr


# --- wait, cancel, retry ------------------------------------------------------------------------------


def test_wait_exits_0_when_all_succeeded(valor):
    a = submit(valor, "--type", "echo", "a")
    b = submit(valor, "--type", "noop", "b")
    result = valor("wait", str(a), str(b), "--timeout", "15")
    assert result.exit_code == 0
    assert result.stdout == f"#{a} succeeded\n#{b} succeeded\n"


def test_wait_exits_1_when_one_failed(valor):
    ok = submit(valor, "--type", "echo", "fine")
    bad = submit(valor, "--type", "fail", "--input", '{"times": 1}', "doomed")
    result = valor("wait", str(ok), str(bad), "--timeout", "15")
    assert result.exit_code == 1
    assert f"#{bad} failed: failing on purpose" in result.stdout


def test_wait_exits_2_on_timeout_naming_what_is_still_open(valor):
    slow = submit(valor, "--type", "sleep", "--input", '{"seconds": 30}', "slow")
    result = valor("wait", str(slow), "--timeout", "0.3")
    assert result.exit_code == 2
    assert re.fullmatch(rf"valor: timed out after 0.3s; still open: #{slow} (queued|running)\n", result.stderr)
    # The module's stack is shared: a 30 s sleep left running would hold an executor slot (and an unacked work
    # message) into the tests after this one, so the cancel must be seen to have ended it.
    assert valor("cancel", str(slow)).exit_code == 0
    assert valor("wait", str(slow), "--timeout", "15").exit_code == 1


def test_cancel_then_show_says_cancelled_and_wait_exits_1(valor):
    slow = submit(valor, "--type", "sleep", "--input", '{"seconds": 30}', "to cancel")
    result = valor("cancel", str(slow))
    assert result.exit_code == 0 and result.stdout == f"{slow}\n"
    assert show_json(valor, slow)["state"] == "cancelled"
    assert valor("wait", str(slow)).exit_code == 1
    again = valor("cancel", str(slow))
    assert again.exit_code == 1
    assert again.stderr == f"valor: #{slow} already cancelled\n"


def test_retry_of_a_failed_promise_prints_a_new_id_that_succeeds(valor):
    first = submit(valor, "--type", "flaky", "--input", '"retry-me"', "flaky once")
    assert valor("wait", str(first), "--timeout", "15").exit_code == 1
    result = valor("retry", str(first))
    assert result.exit_code == 0
    second = int(result.stdout)
    assert second != first
    wait_ok(valor, second)
    assert show_json(valor, second)["retry_of"] == first


def test_retry_of_a_failed_fail_task_creates_a_new_promise(valor):
    first = submit(valor, "--type", "fail", "--input", '{"times": 1}', "fails")
    assert valor("wait", str(first), "--timeout", "15").exit_code == 1
    result = valor("retry", str(first))
    assert result.exit_code == 0
    second = int(result.stdout)
    assert second != first
    shown = show_json(valor, second)
    assert shown["retry_of"] == first and shown["type"] == "fail"


def test_retry_of_a_retrying_promise_runs_it_now_under_the_same_id(valor):
    pid = submit(valor, "--type", "fail", "--input", '{"times": 1}', "--retries", "1", "--backoff", "60", "slow retry")
    for _ in range(100):
        if show_json(valor, pid)["state"] == "retrying":
            break
        time.sleep(0.05)
    else:
        raise AssertionError("never retrying")
    result = valor("retry", str(pid))
    assert result.exit_code == 0 and result.stdout == f"{pid}\n"
    wait_ok(valor, pid)
    assert show_json(valor, pid)["attempts"] == 2


def test_failing_task_with_retries_succeeds_after_growing_backoffs(valor):
    pid = submit(valor, "--type", "fail", "--input", '{"times": 2}', "--retries", "3", "--backoff", "0.2", "t")
    wait_ok(valor, pid)
    shown = show_json(valor, pid)
    assert shown["state"] == "succeeded" and shown["attempts"] == 3
    delays = [e["delay"] for e in shown["events"] if e["type"] == "retry_scheduled"]
    assert len(delays) == 2 and delays[0] < delays[1]


def test_retry_of_a_promise_that_did_not_fail_is_refused(valor):
    pid = submit(valor, "--type", "echo", "fine")
    wait_ok(valor, pid)
    result = valor("retry", str(pid))
    assert result.exit_code == 1
    assert result.stderr == f"valor: #{pid} is succeeded; only failed or cancelled promises can be retried\n"


# --- plans awaiting approval -------------------------------------------------------------------


async def chat_plan(nc, message_id: int) -> list[int]:
    """A chat asks for two echo steps (the stack's respond agent plans them): the plan waits for approval."""
    js = nc.jetstream()
    msg = MessageReceived(chat_id=3, message_id=message_id, text="two steps", at=time.time())
    await js.publish(subjects.chat_in(3), encode(msg), headers={bus.MSG_ID: f"tg:3:{message_id}"})
    for _ in range(200):
        state = await ValorClient(nc).projection()
        for p in state.promises.values():
            if p.spec.task == "respond" and p.spec.message_id == message_id and p.children:
                return sorted(p.children.values())
        await asyncio.sleep(0.05)
    raise AssertionError("the plan was never spawned")


def test_approve_runs_a_waiting_plan_and_reject_cancels_one_and_list_finds_them(valor, stack):
    first, second = stack.call(chat_plan(stack.nc, 1)), stack.call(chat_plan(stack.nc, 2))
    waiting = listed(valor, "--state", "awaiting_approval")
    assert {p["id"] for p in waiting} == set(first + second)
    assert {p["awaits_approval"] for p in waiting} == {"echo work"}

    approved = valor("approve", str(first[1]))
    assert approved.exit_code == 0 and approved.stdout == f"{first[0]}\n{first[1]}\n"
    wait_ok(valor, *first)

    rejected = valor("reject", str(second[0]), "--reason", "not now")
    assert rejected.exit_code == 0 and rejected.stdout == f"{second[0]}\n{second[1]}\n"
    for pid in second:
        shown = show_json(valor, pid)
        assert (shown["state"], shown["error"]) == ("cancelled", "plan rejected by the operator: not now")
    again = valor("approve", str(second[0]))
    assert again.exit_code == 1
    assert again.stderr == f"valor: #{second[0]} is not awaiting approval (it is cancelled)\n"
    assert listed(valor, "--state", "awaiting_approval") == []


# --- list, status, replay ----------------------------------------------------------------------------


def test_list_filters_by_state(valor):
    good = submit(valor, "--type", "echo", "good")
    bad = submit(valor, "--type", "fail", "--input", '{"times": 1}', "bad")
    valor("wait", str(good), str(bad), "--timeout", "15")
    wait_ok(valor, good)
    failed = listed(valor, "--state", "failed")
    assert bad in [p["id"] for p in failed] and good not in [p["id"] for p in failed]
    assert {p["state"] for p in failed} == {"failed"}
    assert all("events" not in p for p in failed)
    assert {"id", "type", "state", "attempts", "result", "depends_on"} <= failed[0].keys()
    table = valor("list", "--state", "succeeded").stdout.splitlines()
    assert table[0].split() == ["ID", "STATE", "TYPE", "ATT", "TITLE", "AGE"]
    assert any(line.split()[:4] == [f"#{good}", "succeeded", "echo", "1"] for line in table[1:])


def status_once_work_is_acked(valor, timeout: float = 10.0) -> dict:
    """`valor status --json` once the executor has acked all its work.

    It acks a message only after it has recorded the result, so right after
    `valor wait` the message may still be pending an ack for a moment.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = valor("status", "--json")
        assert result.exit_code == 0, result.output
        status = json.loads(result.stdout)
        work = status["streams"]["WORK"]["consumers"]["exec-default"]
        if work["num_pending"] == work["num_ack_pending"] == 0 or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def test_status_json_has_streams_executors_scheduler_and_promises(valor):
    wait_ok(valor, submit(valor, "--type", "noop", "counted"))
    status = status_once_work_is_acked(valor)
    assert {"CHAT", "PROMISES", "WORK", "COMMANDS", "DLQ"} <= status["streams"].keys()
    work = status["streams"]["WORK"]
    assert work["consumers"]["exec-default"] == {"num_pending": 0, "num_ack_pending": 0, "num_redelivered": 0}
    executor = status["executors"][EXECUTOR_ID]
    assert (executor["queues"], executor["slots"]) == (["default", "respond"], 5)
    assert [(p["queues"], p["slots"]) for p in executor["pools"]] == [(["default"], 4), (["respond"], 1)]
    assert status["scheduler"].startswith("scheduler-")
    assert status["promises"]["succeeded"] >= 1
    text = valor("status").stdout
    assert EXECUTOR_ID in text and "PROMISES" in text and "promises   " in text
    assert re.search(rf"{EXECUTOR_ID}\s+default \d/4 · respond \d/1\s+seen", text)  # busy/slots per queue


def test_replay_json_counts_events_and_promises(valor):
    wait_ok(valor, submit(valor, "--type", "echo", "replayed"))
    result = valor("replay", "--json")
    assert result.exit_code == 0, result.output
    replay = json.loads(result.stdout)
    status = json.loads(valor("status", "--json").stdout)
    assert replay["events"] == status["streams"]["PROMISES"]["messages"]
    assert replay["promises"] == len(listed(valor))
    assert replay["ignored"] == 0 and replay["seconds"] >= 0


# --- no cluster --------------------------------------------------------------------------------------


def test_unreachable_nats_exits_3_with_one_line_saying_how_to_start_it():
    url = f"nats://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(main, ["list"], env={"VALOR_NATS_URL": url})
    assert result.exit_code == 3
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"valor: cannot reach NATS at {url}") and "make up" in result.stderr


def test_the_console_script_reports_unreachable_nats_without_a_traceback():
    script = Path(sys.executable).parent / "valor"
    url = f"nats://127.0.0.1:{free_port()}"
    done = subprocess.run([str(script), "status"], env={"VALOR_NATS_URL": url}, capture_output=True, text=True,
                          timeout=20)
    assert done.returncode == 3
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1


def test_usage_takes_a_chat_and_a_since_and_refuses_a_since_it_cannot_read(valor):
    # The shared stack's echo tasks spend nothing: the words and the exit codes are what is checked here
    # (the sums are scheduler/test_spend_restart.py's and test_spend.py's).
    shown = valor("usage", "--chat", "424242", "--since", "7d")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines()[:2] == ["Today: $0.00 (0 attempts, 0 tokens)", "Since then: $0.00 (0 attempts, 0 tokens)"]
    as_json = json.loads(valor("usage", "--chat", "424242", "--since", "2026-01-01", "--json").stdout)
    assert as_json["total"]["attempts"] == 0 and as_json["by_chat"] == {}
    bad = valor("usage", "--since", "last tuesday")
    assert bad.exit_code == 2 and "--since: 'last tuesday' is neither a day" in bad.stderr
