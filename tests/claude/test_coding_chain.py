"""The proposal's chain, "set up the test environment, write the tests, then run them", really run.

From a Telegram message (fake Telegram, real ingest, scheduler, executor and
notifier) and from ``valor plan``: the real Claude Code CLI runs each step in
its sandbox against the fake Messages API, whose script makes it do what a
coding agent does — a compound ``git init … && python3 -m venv`` command,
file writes, the test run.  What the chat says comes from each attempt's
recorded evidence: the commands' real exit codes and output, the files
changed.  A second version has a failing test and must say so.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import pytest

from schemas.events import Succeeded
from services.executor.handlers import handlers_for
from services.executor.worker import Executor
from services.ingest.service import Ingest
from services.notifier.service import Notifier
from services.scheduler.service import Scheduler
from tests.chat.fake_telegram import FakeTelegram
from tests.fakes import text, tool_use
from valor import config as valor_config
from valor.client import ValorClient

pytestmark = pytest.mark.timeout(300)

ALICE = 501
SETUP = ("git init -q . && git config user.email valor@example.com && git config user.name Valor"
         " && python3 -m venv .venv && echo ready")
RUN = ".venv/bin/python -m unittest -v test_app"
APP_OK = "def add(a, b):\n    return a + b\n"
APP_WRONG = "def add(a, b):\n    return a - b\n"
TESTS = ("import unittest\n\nfrom app import add\n\n\nclass AddTest(unittest.TestCase):\n"
         "    def test_small(self):\n        self.assertEqual(add(2, 3), 5)\n\n"
         "    def test_zero(self):\n        self.assertEqual(add(0, 0), 0)\n\n\n"
         "if __name__ == '__main__':\n    unittest.main()\n")
CHAIN = [
    {"name": "setup", "type": "code", "title": "Set up the test environment", "input": "STEP-SETUP"},
    {"name": "write", "type": "code", "title": "Write the tests", "input": "STEP-WRITE", "after": ["setup"]},
    {"name": "run", "type": "code", "title": "Run the tests", "input": "STEP-RUN", "after": ["write"]},
]


def planning(request) -> bool:
    return "create_plan" in request.tool_names


def in_step(marker: str):
    """Every request of one step's conversation: its first user message carries the step's input."""
    def matches(request) -> bool:
        first = request.messages[0] if request.messages else {}
        return not planning(request) and marker in json.dumps(first.get("content"))
    return matches


def script_steps(fake, workspace: Path, app: str) -> None:
    fake.script(
        tool_use("Bash", {"command": SETUP, "description": "git repo and venv"}, when=in_step("STEP-SETUP")),
        text("The repository and .venv are ready.", when=in_step("STEP-SETUP")),
        tool_use("Write", {"file_path": str(workspace / "app.py"), "content": app}, when=in_step("STEP-WRITE")),
        tool_use("Write", {"file_path": str(workspace / "test_app.py"), "content": TESTS},
                 when=in_step("STEP-WRITE")),
        text("Wrote app.py and test_app.py.", when=in_step("STEP-WRITE")),
        tool_use("Bash", {"command": RUN, "description": "run the tests"}, when=in_step("STEP-RUN")),
        text("The tests ran.", when=in_step("STEP-RUN")),
    )


@pytest.fixture
def chat_config(workspace):
    return valor_config.parse(f'workspace = "{workspace}"\n[telegram]\nallow_users = [{ALICE}]\n'
                              "chat_interval = 0.0\nedit_interval = 0.2\n")


@pytest.fixture
async def valor(nc, claude_env, chat_config):
    world = FakeTelegram()
    scheduler = Scheduler(nc, config=chat_config)
    executor = Executor(nc, ["respond", "code"], slots=4, handlers=handlers_for(chat_config, nc),
                        executor_id="chain", fetch_timeout=0.2, heartbeat_interval=0.2)
    ingest = Ingest(nc, world.inbound(), chat_config)
    notifier = Notifier(nc, world.transport(), chat_config)
    for service in (executor, scheduler, notifier):
        await service.start()
    await ingest.start(reconcile_forever=False)
    yield ValorClient(nc), world, notifier
    for service in (ingest, notifier, scheduler):
        await service.stop()
    await executor.stop(grace=1)


async def until(predicate, timeout: float = 120.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        found = await predicate()
        if found:
            return found
        assert time.monotonic() < deadline, f"no {what} after {timeout}s"
        await asyncio.sleep(0.2)


async def chain_of(client: ValorClient, message_id: int) -> dict[str, int]:
    async def children():
        state = await client.projection()
        for p in state.promises.values():
            if p.spec.task == "respond" and p.spec.message_id == message_id:
                assert not (p.terminal and p.state != "succeeded"), f"respond #{p.id} {p.state}: {p.error}"
                return p.children
        return None
    return await until(children, what="plan")


async def evidence_of(client: ValorClient, promise_id: int):
    events = [e for _, e in await client.events(f"promise.{promise_id}.succeeded")]
    [succeeded] = [e for e in events if isinstance(e, Succeeded)]
    return succeeded.evidence


def said(world: FakeTelegram, reply_to: int) -> list[str]:
    return [m.text for m in world.sent if m.reply_to == reply_to]


@pytest.mark.parametrize("app, verdict", [(APP_OK, "passes"), (APP_WRONG, "fails")])
async def test_the_chain_from_a_chat_message_runs_git_a_venv_and_the_tests_and_the_chat_shows_their_result(
        valor, claude_env, workspace, app, verdict):
    client, world, notifier = valor
    claude_env.script(tool_use("create_plan", {"tasks": CHAIN}, when=planning),
                      text("Planned: setup, then write, then run.", when=planning))
    script_steps(claude_env, workspace, app)
    message = await world.says(ALICE, ALICE, "set up the test environment, write the tests, then run them")
    ids = await chain_of(client, message.id)
    states = await client.wait([ids["setup"], ids["write"], ids["run"]], timeout=180)
    assert set(states.values()) == {"succeeded"}, states

    # The work happened in the workspace, with the tools a coding agent needs.
    assert (workspace / ".git").is_dir() and (workspace / ".venv" / "bin" / "python").exists()
    assert (workspace / "test_app.py").read_text() == TESTS
    setup = await evidence_of(client, ids["setup"])
    # (The output may start with what the machine's shell profile prints.)
    [(command, code, output)] = [(c.command, c.exit_code, c.output) for c in setup.commands]
    assert (command, code) == (SETUP, 0) and output.endswith("ready")
    write = await evidence_of(client, ids["write"])
    assert [(f.path, f.status) for f in write.files] == [("app.py", "added"), ("test_app.py", "added")]
    run = await evidence_of(client, ids["run"])
    [test_run] = run.commands
    assert test_run.command == RUN and test_run.check and "Ran 2 tests" in test_run.output
    assert run.session_id and run.turns == 2 and run.cost_usd > 0 and run.tokens.input > 0

    async def final_told():  # the plan's one final reply (decision 43), with each step's line
        return [t for t in said(world, message.id) if t.startswith(("✅ All 3", "⚠️ All 3", "❌ The plan"))] or None
    [told] = await until(final_told, what="the plan's final reply")
    [line] = [t for t in told.splitlines() if f" 3. run #{ids['run']} — " in t]
    if verdict == "passes":
        assert test_run.exit_code == 0 and test_run.output.rstrip().endswith("OK")
        assert told.startswith("✅ All 3 steps succeeded in ") and line.startswith("✅ ")
        assert f"ran `{RUN}`: exit 0" in line
    else:
        assert test_run.exit_code == 1 and "FAILED (failures=1)" in test_run.output
        assert told.splitlines()[0].endswith(f"but the last check of #{ids['run']} run failed.")
        assert line.startswith("⚠️ ") and f"ran `{RUN}`: exit 1" in line
    assert len(said(world, message.id)) == 2  # the plan's reply (its checklist) and its final reply
    await notifier.run_until_idle()
    reactions = [emoji for _, msg_id, emoji in world.reactions if msg_id == message.id]
    assert reactions[-1] == ("✅" if verdict == "passes" else "❌")


async def test_the_chain_from_valor_plan_passes_each_step_its_predecessor_s_result(
        nc, nats_server, claude_env, config, workspace):
    script_steps(claude_env, workspace, APP_OK)
    scheduler = Scheduler(nc, config=config)
    executor = Executor(nc, ["code"], slots=2, handlers=handlers_for(config, nc), executor_id="plan",
                        fetch_timeout=0.2, heartbeat_interval=0.2)
    await executor.start()
    await scheduler.start()
    try:
        valor = str(Path(sys.executable).parent / "valor")
        env = {**os.environ, "VALOR_NATS_URL": nats_server.url}
        proc = await asyncio.create_subprocess_exec(
            valor, "plan", "-", env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate(json.dumps({"tasks": CHAIN}).encode())
        assert proc.returncode == 0, err.decode()
        ids = {name: int(i) for name, i in (line.split() for line in out.decode().splitlines())}
        proc = await asyncio.create_subprocess_exec(
            valor, "wait", *(str(ids[n]) for n in ("setup", "write", "run")), "--timeout", "180", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        proc = await asyncio.create_subprocess_exec(
            valor, "show", str(ids["run"]), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        shown, _ = await proc.communicate()
    finally:
        await scheduler.stop()
        await executor.stop(grace=1)
    shown = shown.decode()
    assert "evidence" in shown and f"exit 0   {RUN}   [check]" in shown and "    | OK" in shown
    run_request = next(r for r in claude_env.requests if in_step("STEP-RUN")(r))
    assert "Wrote app.py and test_app.py." in run_request.last_user_text  # the write step's result
