"""A follow-up in the chat continues a Claude Code task in its own session, end to end.

Telegram (the fake world) -> ingest -> scheduler -> respond -> the real Claude Code
CLI against the fake API -> notifier -> Telegram; then a reply to the task's
result message starts a continuation whose CLI run resumes the first session:
its request to the API carries the first run's turns.  Only Telegram and the
Anthropic API are faked.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from schemas.events import Created, Notified
from services.executor.handlers import handlers_for
from services.executor.worker import Executor
from services.ingest.service import Ingest
from services.notifier.service import Notifier
from services.scheduler.service import Scheduler
from tests.chat.fake_telegram import FakeTelegram
from tests.fakes import Recorded, text
from valor import config as valor_config
from valor.client import ValorClient

pytestmark = pytest.mark.timeout(300)

ANA = 501  # a private chat's id is the user's


@pytest.fixture
def config(workspace):
    return valor_config.parse(f'workspace = "{workspace}"\n'
                              f'[telegram]\nallow_users = [{ANA}]\nchat_interval = 0.0\nedit_interval = 0.2\n')


@pytest.fixture
async def chat(nc, claude_env, config):
    """Every service, the chat on the fake Telegram; yields (client, world)."""
    world = FakeTelegram()
    world.user(ANA, "ana", "Ana")
    scheduler = Scheduler(nc, config=config)
    executor = Executor(nc, ["respond", "code"], slots=4, handlers=handlers_for(config, nc),
                        executor_id="continue", fetch_timeout=0.2, heartbeat_interval=0.2)
    ingest = Ingest(nc, world.inbound(), config)
    notifier = Notifier(nc, world.transport(), config)
    await executor.start()
    await scheduler.start()
    await notifier.start()
    await ingest.start(reconcile_forever=False)
    yield ValorClient(nc), world
    for service in (ingest, notifier, scheduler):
        await service.stop()
    await executor.stop(grace=1)


async def until(client: ValorClient, find, what: str, timeout: float = 90.0):
    """The first value ``find(events)`` returns that is not None, read from the log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = find([e for _, e in await client.events()])
        if found is not None:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"never saw {what}")


def terminal_notice(pid: int):
    return lambda events: next((e for e in events if isinstance(e, Notified) and e.id == pid
                                and e.kind == "terminal"), None)


def created_for(message_id: int, task: str):
    return lambda events: next((e for e in events if isinstance(e, Created) and e.message_id == message_id
                                and e.task == task), None)


def run_of(marker: str):
    """The CLI's main-loop request (it offers tools) whose latest user turn carries ``marker``."""
    return lambda request: bool(request.tools) and marker in request.last_user_text


def said(request: Recorded, role: str) -> str:
    return "\n".join(json.dumps(m["content"]) for m in request.messages if m.get("role") == role)


async def test_a_reply_to_a_code_task_s_result_resumes_its_claude_session(chat, claude_env):
    client, world = chat
    claude_env.script(text("FIRST-ANSWER: the bug is in auth.py", when=run_of("TURN-ONE")),
                      text("SECOND-ANSWER: added tests/test_auth.py", when=run_of("TURN-TWO")))

    asked = await world.says(ANA, ANA, "/do TURN-ONE find the login bug")
    first = await until(client, created_for(asked.id, "code"), "the code task")
    notice = await until(client, terminal_notice(first.id), "the code task's result message", timeout=180)
    done, _ = await client.promise(first.id)
    assert done.state == "succeeded" and done.result["text"] == "FIRST-ANSWER: the bug is in auth.py"
    [result_message] = [s for s in world.sent if s.id == notice.telegram_message_id]
    assert result_message.reply_to == asked.id

    follow_up = await world.says(ANA, ANA, "TURN-TWO now add a test for it", reply_to=result_message.id)
    second = await until(client, created_for(follow_up.id, "code"), "the continuation")
    assert (second.continues, second.resume_session) == (first.id, done.result["session_id"])
    assert (second.chat_id, second.concurrency_key) == (ANA, first.concurrency_key)
    states = await client.wait([second.id], timeout=180)
    assert states == {second.id: "succeeded"}

    [resumed] = [r for r in claude_env.calls() if run_of("TURN-TWO")(r)]
    assert "TURN-ONE find the login bug" in said(resumed, "user")  # the first run's turns
    assert "FIRST-ANSWER: the bug is in auth.py" in said(resumed, "assistant")
    continued, _ = await client.promise(second.id)
    assert continued.result["text"] == "SECOND-ANSWER: added tests/test_auth.py"
    assert continued.result["session_id"] == done.result["session_id"]  # the same session, one turn longer
    assert not any("create_plan" in r.tool_names for r in claude_env.calls()), "no model decided the follow-up"
    answer = await until(client, terminal_notice(second.id), "the continuation's result message")
    [reply] = [s for s in world.sent if s.id == answer.telegram_message_id]
    assert reply.reply_to == follow_up.id
