"""The original proposal's two workflows, driven from a chat message all the way through:

message on CHAT -> respond promise -> LLM agent (real SDK, fake API) -> plan ->
promises -> the real Claude Code CLI runs each step (against the same fake) ->
results passed to dependents.  Only the Anthropic API is faked.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from schemas import subjects
from schemas.events import MessageReceived, Started, Succeeded, encode
from services.executor.handlers import handlers_for
from services.executor.worker import Executor
from services.scheduler.service import Scheduler
from tests.fakes import text, tool_use
from valor import bus
from valor.client import ValorClient

pytestmark = pytest.mark.timeout(300)

CHAT = 77


def planning(request) -> bool:
    return "create_plan" in request.tool_names


def step(marker: str):
    """A Claude Code request (not the agent's) whose prompt mentions ``marker``."""
    return lambda request: not planning(request) and marker in request.last_user_text


@pytest.fixture
async def valor(nc, claude_env, config):
    scheduler = Scheduler(nc, config=config)
    executor = Executor(nc, ["respond", "code"], slots=4, handlers=handlers_for(config, nc),
                        executor_id="flow", fetch_timeout=0.2, heartbeat_interval=0.2)
    await executor.start()
    await scheduler.start()
    yield ValorClient(nc)
    await scheduler.stop()
    await executor.stop(grace=1)


async def say(js, text_: str, message_id: int) -> None:
    msg = MessageReceived(chat_id=CHAT, message_id=message_id, sender_id=1, sender_name="Ana", text=text_,
                          at=time.time())
    await js.publish(subjects.chat_in(CHAT), encode(msg), headers={bus.MSG_ID: f"tg:{CHAT}:{message_id}"})


async def children_of_message(client: ValorClient, message_id: int, timeout: float = 60) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = await client.projection()
        for p in state.promises.values():
            if p.spec.task == "respond" and p.spec.message_id == message_id and p.children is not None:
                return p.children
            if p.spec.task == "respond" and p.spec.message_id == message_id and p.terminal and p.state != "succeeded":
                raise AssertionError(f"respond #{p.id} {p.state}: {p.error}")
        await asyncio.sleep(0.2)
    raise AssertionError("the message was never answered with a plan")


async def test_review_request_runs_three_reviews_in_parallel_and_a_summary_of_all_three(js, valor, claude_env):
    files = ["auth.py", "api.py", "database.py"]
    plan = [{"name": f"review_{f.split('.')[0]}", "type": "code_review", "title": f"Review {f} for security issues",
             "input": f"Review {f} for security issues"} for f in files]
    plan.append({"name": "summary", "type": "analysis", "title": "Summarise the security reviews",
                 "input": "Summarise the three reviews", "after": [t["name"] for t in plan]})
    claude_env.script(
        tool_use("create_plan", {"tasks": plan}, when=planning),
        text("Planned three reviews and a summary.", when=planning),
        *[text(f"{f}: finding {i}", when=step(f"Review {f}"), delay=1.0) for i, f in enumerate(files)],
        text("Three findings, one per file.", when=step("Summarise the three reviews")),
    )
    await say(js, "review auth.py, api.py and database.py for security issues", 1)
    children = await children_of_message(valor, 1)
    assert sorted(children) == ["review_api", "review_auth", "review_database", "summary"]
    states = await valor.wait(list(children.values()), timeout=180)
    assert set(states.values()) == {"succeeded"}, states

    events = [e for _, e in await valor.events()]
    reviews = [children[f"review_{f.split('.')[0]}"] for f in files]
    starts = [e.at for e in events if isinstance(e, Started) and e.id in reviews]
    ends = [e.at for e in events if isinstance(e, Succeeded) and e.id in reviews]
    assert len(starts) == 3 and max(starts) < min(ends), "the three reviews ran at the same time"
    summary, _ = await valor.promise(children["summary"])
    assert summary.result["text"] == "Three findings, one per file."
    [summary_request] = [r for r in claude_env.requests if step("Summarise the three reviews")(r)]
    for i, f in enumerate(files):
        assert f"{f}: finding {i}" in summary_request.last_user_text  # it received all three results


async def test_setup_write_run_request_runs_a_chain_whose_steps_receive_their_predecessors(js, valor, claude_env):
    chain = [
        {"name": "setup", "type": "code", "title": "Set up the test environment", "input": "STEP-SETUP"},
        {"name": "write", "type": "code", "title": "Write unit tests", "input": "STEP-WRITE", "after": ["setup"]},
        {"name": "run", "type": "code", "title": "Run the tests", "input": "STEP-RUN", "after": ["write"]},
    ]
    claude_env.script(
        tool_use("create_plan", {"tasks": chain}, when=planning),
        text("Planned: setup, then write, then run.", when=planning),
        text("venv ready at .venv", when=step("STEP-SETUP")),
        text("wrote tests/test_app.py", when=step("STEP-WRITE")),
        text("5 passed", when=step("STEP-RUN")),
    )
    await say(js, "set up the test environment, write unit tests, then run them", 2)
    children = await children_of_message(valor, 2)
    states = await valor.wait([children[n] for n in ("setup", "write", "run")], timeout=180)
    assert set(states.values()) == {"succeeded"}, states
    write_request = next(r for r in claude_env.requests if step("STEP-WRITE")(r))
    run_request = next(r for r in claude_env.requests if step("STEP-RUN")(r))
    assert "venv ready at .venv" in write_request.last_user_text
    assert "wrote tests/test_app.py" in run_request.last_user_text
    run, _ = await valor.promise(children["run"])
    assert run.result["text"] == "5 passed"
