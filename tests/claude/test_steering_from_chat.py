"""Replies steer Claude Code tasks, end to end: instructions added before a task starts join its input, those
sent while it runs reach the live session of the real CLI, and a reply after its end continues it.

Telegram (the fake world) -> ingest -> scheduler -> respond (the command agent: no model decides which
promise a reply means) -> the real Claude Code CLI against the fake API -> notifier -> Telegram.  Two code
tasks share the workspace's concurrency key, so the second waits while the first runs.
"""

from __future__ import annotations

import threading

import pytest

from schemas.events import InstructionsAdded, InstructionsDelivered, Notified
from tests.fakes import text

from .conftest import INSTALL_TIMEOUT
from .test_continue_session import ANA, chat, config, created_for, run_of, terminal_notice, until  # noqa: F401

pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT + 300)


def status_notice(pid: int):
    return lambda events: next((e for e in events if isinstance(e, Notified) and e.id == pid
                                and e.kind == "status"), None)


def instructions_for(pid: int):
    return lambda events: next((e for e in events if isinstance(e, InstructionsAdded) and e.id == pid), None)


async def answer(client, world, message_id: int) -> str:
    """Valor's answer to the user's message ``message_id``."""
    respond = await until(client, created_for(message_id, "respond"), f"the answer to {message_id}")
    sent = await until(client, terminal_notice(respond.id), f"the answer to {message_id} sent")
    return next(s.text for s in world.sent if s.id == sent.telegram_message_id)


async def test_replies_add_instructions_before_the_start_into_a_running_session_and_continue_after_the_end(
        chat, claude_env):  # noqa: F811
    client, world = chat
    thinking = threading.Event()  # the model "thinks" about the first task until the test lets it answer
    claude_env.script(text("FIRST-DONE: refactored auth.py", when=run_of("FIRST-TASK"), release=thinking),
                      text("HINT-TAKEN: the logs are clean", when=run_of("INJECTED-HINT")),
                      text("SECOND-DONE: parser written, tested with pytest", when=run_of("use pytest please")),
                      text("THIRD-DONE: added a test", when=run_of("TURN-THREE")))

    asked_first = await world.says(ANA, ANA, "/do FIRST-TASK refactor auth.py")
    first = await until(client, created_for(asked_first.id, "code"), "the first code task")
    asked_second = await world.says(ANA, ANA, "/do SECOND-TASK write the config parser")
    second = await until(client, created_for(asked_second.id, "code"), "the second code task")
    promised = await until(client, terminal_notice((await until(
        client, created_for(asked_second.id, "respond"), "its answer")).id), "'Promised #…' sent")
    status = await until(client, status_notice(first.id), "the first task's status message", timeout=120)

    # Before the start: the second task waits for the workspace; a reply to its "Promised" adds to its input.
    before = await world.says(ANA, ANA, "use pytest please", reply_to=promised.telegram_message_id)
    await until(client, instructions_for(second.id), "instructions for the waiting task")
    assert (await client.promise(second.id))[0].state == "queued"
    assert await answer(client, world, before.id) == (
        f'Added to #{second.id} code "SECOND-TASK write the config parser" before it starts: use pytest please')

    # While it runs: a reply to the status message goes into the live session.
    live = await world.says(ANA, ANA, "INJECTED-HINT check the logs too", reply_to=status.telegram_message_id)
    await until(client, instructions_for(first.id), "instructions for the running task")
    thinking.set()
    assert await client.wait([first.id, second.id], timeout=180) == {first.id: "succeeded", second.id: "succeeded"}
    assert (await answer(client, world, live.id)).startswith(f'Passing that to #{first.id} code "FIRST-TASK')
    first_runs = [r for r in claude_env.calls() if r.tools and "FIRST-TASK" in str(r.messages)]
    assert [("INJECTED-HINT check the logs too" in r.last_user_text) for r in first_runs] == [False, True]
    done_first, events_first = await client.promise(first.id)
    assert done_first.result["text"] == "HINT-TAKEN: the logs are clean"
    assert [(e.attempt, e.request_id) for e in events_first if isinstance(e, InstructionsDelivered)] == [
        (1, next(e.request_id for e in events_first if isinstance(e, InstructionsAdded)))]
    [second_run] = [r for r in claude_env.calls() if run_of("SECOND-TASK")(r)]
    assert "Instructions the user added since asking:\n- use pytest please" in second_run.last_user_text

    # Why, by reply: the story tells both kinds of instructions.
    why_first = await world.says(ANA, ANA, "why?", reply_to=status.telegram_message_id)
    told = await answer(client, world, why_first.id)
    assert f"instructions added from message {live.id} while it ran" in told
    assert 'attempt 1 took the instructions "INJECTED-HINT check the logs too" into its running session' in told
    result = await until(client, terminal_notice(second.id), "the second task's result message")
    why_second = await world.says(ANA, ANA, "why?", reply_to=result.telegram_message_id)
    assert (f'instructions added from message {before.id} before it started; they join its input: '
            '"use pytest please"') in await answer(client, world, why_second.id)

    # After the end: the reply continues the task in its session.
    follow = await world.says(ANA, ANA, "TURN-THREE now add a test for it", reply_to=result.telegram_message_id)
    third = await until(client, created_for(follow.id, "code"), "the continuation")
    done_second, _ = await client.promise(second.id)
    assert (third.continues, third.resume_session) == (second.id, done_second.result["session_id"])
    assert await client.wait([third.id], timeout=180) == {third.id: "succeeded"}
    assert not any("create_plan" in r.tool_names for r in claude_env.calls()), "no model decided the replies"
