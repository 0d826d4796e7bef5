"""What attempts spend, recorded on their end events, and the cap that stops them (decision 47).

The real CLI against the fake API, whose answers carry usage: the CLI prices
them (``total_cost_usd``); what streamed after its last ``result`` is priced by
``valor.spend`` and marked estimated.
"""

import msgspec
import pytest
from prometheus_client import REGISTRY

from schemas.commands import WorkItem
from schemas.events import AttemptFailed, AttemptStopped, Cancelled, Succeeded
from services.executor.claude import claude_handler
from services.executor.context import AttemptContext, TaskFailed
from services.executor.worker import Executor
from services.scheduler import snapshot
from services.scheduler.projection import Projection
from tests.executor.helpers import names, put_work, story
from tests.fakes import text, tool_use
from valor import bus, spend
from valor import config as valor_config

from .conftest import INSTALL_TIMEOUT
from .test_claude_code import claude_running_in, run, until

pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT + 60)


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def write(workspace, name="a.txt"):
    return tool_use("Write", {"file_path": str(workspace / name), "content": "hi\n"})


async def test_a_success_records_the_clis_own_cost_and_tokens(js, claude_env, claude_executor, workspace):
    claude_env.script(write(workspace), text("Wrote it."))
    usd, tokens = sample("valor_spend_usd_total", type="code"), sample("valor_spend_tokens_total", type="code",
                                                                       kind="input")
    events = await run(js, claude_executor, WorkItem(id=21, attempt=1, task="code", title="Write", timeout=60))
    done = events[-1]
    assert isinstance(done, Succeeded)
    assert done.evidence.cost_usd == done.result["cost_usd"] > 0 and not done.evidence.cost_estimated
    assert done.evidence.tokens.input > 0 and done.evidence.tokens.output > 0
    # Prometheus counts it by type, as recorded (the log stays the truth: decision 47).
    assert sample("valor_spend_usd_total", type="code") - usd == pytest.approx(done.evidence.cost_usd)
    assert sample("valor_spend_tokens_total", type="code", kind="input") - tokens == done.evidence.tokens.input


async def test_a_failure_records_what_was_spent_before_it(claude_env, workspace):
    config = valor_config.parse(f'workspace = "{workspace}"\n[types.code]\nfailed_check = "fail"\n'
                                "checks = 'run-checks'\n")
    claude_env.script(tool_use("Bash", {"command": "exit 3 # run-checks", "description": "check"}), text("Done"))
    ctx = AttemptContext(id=22, attempt=1, task="code", title="Check")
    with pytest.raises(TaskFailed):
        await claude_handler("code", config.types["code"], config)(ctx)
    assert ctx.evidence.cost_usd > 0 and not ctx.evidence.cost_estimated and ctx.evidence.tokens.input > 0


async def test_a_failed_attempt_run_by_an_executor_records_its_spend_in_the_log(nc, js, claude_env, workspace):
    config = valor_config.parse(f'workspace = "{workspace}"\n[types.code]\nfailed_check = "fail"\n'
                                "checks = 'run-checks'\n")
    claude_env.script(tool_use("Bash", {"command": "exit 3 # run-checks", "description": "check"}), text("Done"))
    executor = Executor(nc, ["code"], 1, handlers={"code": claude_handler("code", config.types["code"], config)},
                        executor_id="test-claude-fail", fetch_timeout=0.2, heartbeat_interval=0.2)
    await executor.start()
    try:
        events = await run(js, executor, WorkItem(id=24, attempt=1, task="code", title="Check", timeout=60))
    finally:
        await executor.stop(grace=1.0)
    failed = events[-1]
    assert isinstance(failed, AttemptFailed) and not failed.retryable
    assert failed.error == "the check `exit 3 # run-checks` exited 3"
    assert failed.evidence.cost_usd > 0 and not failed.evidence.cost_estimated
    assert failed.evidence.tokens.input > 0


async def test_a_timeout_records_the_spend_streamed_up_to_the_kill(js, claude_env, claude_executor, workspace):
    claude_env.script(write(workspace), text("too late", delay=60))
    await put_work(js, WorkItem(id=23, attempt=1, task="code", title="Slow", timeout=5), queue="code")
    failed = await until(lambda: _last_of(js, 23, AttemptFailed), timeout=20, what="attempt_failed")
    assert failed.error == "timed out after 5s"
    # No result line came: the first call's usage, priced here.
    assert failed.evidence.cost_estimated and failed.evidence.cost_usd > 0
    assert failed.evidence.tokens.input > 0
    await claude_executor.run_until_idle()


async def test_a_cancel_records_the_spend_in_attempt_stopped(js, claude_env, claude_executor, workspace):
    claude_env.script(write(workspace), text("too late", delay=60))
    await put_work(js, WorkItem(id=24, attempt=1, task="code", title="Slow", timeout=60), queue="code")
    await claude_running_in(workspace, claude_env)
    await until(lambda: len(claude_env.calls()) >= 2, what="the second model call")
    await bus.publish_event(js, Cancelled(id=24, reason="user asked", by="test"), "24:cancelled")
    await claude_executor.run_until_idle(timeout=15)
    events = await story(js, 24)
    assert names(events) == ["started", "progress", "cancelled", "attempt_stopped"]
    stopped = events[-1]
    assert isinstance(stopped, AttemptStopped)
    assert stopped.evidence.cost_usd > 0 and stopped.evidence.tokens.input > 0


async def test_a_cap_stops_the_attempt_and_fails_it_for_good(js, claude_env, claude_executor, workspace):
    claude_env.script(write(workspace), write(workspace, "b.txt"), text("done"))
    events = await run(js, claude_executor, WorkItem(id=25, attempt=1, task="code", title="Spend", timeout=60,
                                                     max_cost=0.01))
    failed = events[-1]
    assert isinstance(failed, AttemptFailed) and failed.retryable is False
    assert failed.error.startswith("stopped at its cost cap of $0.01 ($0.") and failed.error.endswith("not retried")
    assert failed.evidence.cost_usd > 0.01
    assert len(claude_env.calls()) == 1  # stopped at the first call's usage, long before "done"
    assert "--max-budget-usd" not in failed.error


async def test_totals_from_the_log_survive_a_restart(js, claude_env, claude_executor, workspace):
    claude_env.script(text("one"), text("two"))
    for pid in (26, 27):
        await run(js, claude_executor, WorkItem(id=pid, attempt=1, task="code", title="x", timeout=60))
    before = Projection()
    from schemas.events import Created, Dispatched
    for pid in (26, 27):
        before.apply(Created(id=pid, title="x", task="code", queue="code", chat_id=5))
        before.apply(Dispatched(id=pid, attempt=1, queue="code"))
        for e in await story(js, pid):
            before.apply(e)
    totals = spend.totals(spend.charges(before.promises.values()))
    assert totals.all.attempts == 2 and totals.all.usd > 0
    _, after = snapshot.restore(snapshot.encode(before, "stream", 0.0))
    assert spend.totals(spend.charges(after.promises.values())).as_dict() == totals.as_dict()
    replayed = Projection()  # and a scheduler that folds the same log again gets the same totals
    for pid in (26, 27):
        replayed.apply(Created(id=pid, title="x", task="code", queue="code", chat_id=5))
        replayed.apply(Dispatched(id=pid, attempt=1, queue="code"))
        for e in await story(js, pid):
            replayed.apply(e)
    assert spend.totals(spend.charges(replayed.promises.values())).by_chat[5].usd == pytest.approx(totals.all.usd)


async def _last_of(js, pid, cls):
    found = [e for e in await story(js, pid) if isinstance(e, cls)]
    return found[-1] if found else None


def test_the_cap_is_passed_to_the_cli(config):
    from services.executor.claude import command
    argv = command("claude", config.types["code"], max_cost=0.5)
    assert argv[argv.index("--max-budget-usd") + 1] == "0.5000"
    assert msgspec.json.encode(argv)
