"""Instructions reach a Claude Code attempt: joined to its prompt before it starts, written into its live session
while it runs.  The real CLI (``--input-format stream-json``) against the fake API; work and instructions go
through NATS as the scheduler would put them there.
"""

from __future__ import annotations

import threading

import pytest

from schemas import subjects
from schemas.commands import WorkItem
from schemas.events import InstructionsAdded, InstructionsDelivered
from tests.executor.helpers import names, put_work, story
from tests.fakes import text
from valor import bus

from .conftest import INSTALL_TIMEOUT
from .test_claude_code import until

pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT + 120)


def run_of(marker: str):
    """The CLI's main-loop request (it offers tools) whose latest user turn carries ``marker``."""
    return lambda request: bool(request.tools) and marker in request.last_user_text


def added(pid: int, text_: str, n: int) -> InstructionsAdded:
    return InstructionsAdded(id=pid, text=text_, request_id=f"respond:{n}:0", by=f"respond #{n}")


async def test_instructions_added_before_the_start_join_the_prompt(js, claude_env, claude_executor):
    claude_env.script(text("Done with pytest.", when=run_of("Write the parser")))
    item = WorkItem(id=1, attempt=1, task="code", title="Write the parser", input="Parse the config file.",
                    timeout=120, instructions=[added(1, "use pytest for the tests", 5)])
    await put_work(js, item, queue="code")
    await claude_executor.run_until_idle(timeout=120)
    assert names(await story(js, 1)) == ["started", "succeeded"]
    [request] = [r for r in claude_env.calls() if run_of("Write the parser")(r)]
    assert ("Parse the config file.\n\nInstructions the user added since asking:\n- use pytest for the tests"
            in request.last_user_text)


async def test_instructions_recorded_while_it_runs_reach_the_live_session_and_its_next_request(
        js, claude_env, claude_executor):
    thinking = threading.Event()
    claude_env.script(text("FIRST-ANSWER: refactored auth.py", when=run_of("TURN-ONE"), release=thinking),
                      text("SECOND-ANSWER: checked the logs too", when=run_of("INJECTED-HINT")))
    await put_work(js, WorkItem(id=2, attempt=1, task="code", title="Refactor", input="TURN-ONE refactor auth.py",
                                timeout=120), queue="code")
    # The model is thinking about the first turn: the CLI is running, its session live.
    await until(lambda: any(run_of("TURN-ONE")(r) for r in claude_env.calls()), timeout=90, what="first request")
    instruction = added(2, "INJECTED-HINT check the logs too", 7)
    await bus.publish_event(js, instruction, subjects.msg_id_for_event(2, "instructions_added", "respond:7:0"))
    thinking.set()
    await claude_executor.run_until_idle(timeout=120)

    events = await story(js, 2)
    assert names(events) == ["started", "instructions_added", "instructions_delivered", "succeeded"]
    delivered = next(e for e in events if isinstance(e, InstructionsDelivered))
    assert (delivered.attempt, delivered.request_id) == (1, "respond:7:0")
    first, second = [r for r in claude_env.calls() if r.tools]
    assert "INJECTED-HINT" not in first.last_user_text
    assert "INJECTED-HINT check the logs too" in second.last_user_text  # the next request carries it
    assert "FIRST-ANSWER: refactored auth.py" in str(second.messages)  # in the same session, after the first turn
    result = events[-1].result
    assert result["text"] == "SECOND-ANSWER: checked the logs too"
    assert result["session_id"] == events[-1].evidence.session_id
