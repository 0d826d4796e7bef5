"""No second Claude Code CLI in one workspace when an executor dies or hangs mid-task.

Executors run as real processes (``python -m services.executor``) with the real
CLI against the fake API, which holds the model's first turn so the task is
mid-way when the executor is killed (``kill -9``) or frozen (SIGSTOP, as a hung
or cut-off machine).  A killed executor's CLI gets SIGTERM from the kernel
(``PR_SET_PDEATHSIG``); a frozen one's is found through its record under
``$VALOR_RUN_DIR`` by the executor the attempt is redelivered to, and stopped
before that attempt starts (services/executor/groups.py).
"""

from __future__ import annotations

import signal

import pytest

from schemas.commands import WorkItem
from schemas.events import Started
from tests.executor.helpers import names, put_work, story
from tests.fakes import text
from valor.stack import Stack

from .conftest import INSTALL_TIMEOUT, group_members, processes_in
from .test_claude_code import until

pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT + 120)
ACK_WAIT = 2  # seconds before JetStream hands a silent executor's work to another


def model_calls(fake) -> list:
    return [request for request in fake.calls() if request.tools]  # the CLI's own loop, not its side requests


@pytest.mark.parametrize("stop_executor", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "frozen"])
async def test_an_executor_lost_mid_task_leaves_one_cli_in_the_workspace_and_the_promise_ends_once(
        stop_executor, nats_server, js, claude_env, workspace, tmp_path):
    settings = tmp_path / "valor.toml"
    settings.write_text(f'workspace = "{workspace}"\n')
    stack = Stack(nats_server, schedulers=0, executors=2, slots=1,
                  env_extra={"VALOR_ACK_WAIT": str(ACK_WAIT), "VALOR_CONFIG": str(settings)})
    first, second = stack.services["executor-1"], stack.services["executor-2"]
    claude_env.script(text("never sent", delay=300), text("Done.", delay=3.0))
    try:
        first.start()
        await put_work(js, WorkItem(id=1, attempt=1, task="code", title="Refactor", timeout=120), queue="code")
        await until(lambda: model_calls(claude_env), timeout=60, what="first CLI asking the model")
        before = set((await until(lambda: processes_in(workspace), what="first CLI")).values())

        first.proc.send_signal(stop_executor)
        second.start()
        redelivered = await until(lambda: _started(js, delivery=2), timeout=60, what="redelivered attempt")
        assert redelivered.executor == "executor-2"
        # The first run ended before the second started: never two CLIs in the workspace.
        assert all(group_members(g) == [] for g in before), stack.logs()

        await until(lambda: len(model_calls(claude_env)) >= 2, timeout=60, what="second CLI asking the model")
        now = set(processes_in(workspace).values())
        assert len(now) == 1 and not now & before, (now, before)

        async def ended():
            events = await story(js, 1)
            return events if names(events)[-1:] == ["succeeded"] else None

        events = await until(ended, timeout=60, what="result")
        assert names(events) == ["started", "started", "succeeded"], stack.logs()
        assert events[-1].result["text"] == "Done."
        assert processes_in(workspace) == {}
    finally:
        stack.kill()  # SIGKILL ends a frozen process too


async def _started(js, delivery: int) -> Started | None:
    found = [e for e in await story(js, 1) if isinstance(e, Started) and e.delivery == delivery]
    return found[0] if found else None
