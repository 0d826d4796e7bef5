"""A plan waits for the user's go in a Telegram chat: shown, approved, refused or left to expire.

The fake Telegram, real ingest, notifier, scheduler and executor, and the real
command agent (no language model).  The scheduler's clock is injected so the
expiry needs no waiting.
"""

import asyncio
import time

import msgspec
import pytest

from schemas.events import Approved, Created, Spawned, Succeeded
from services.executor.respond import respond_handler
from services.executor.worker import Executor
from services.ingest.service import Ingest
from services.notifier import texts
from services.notifier.board import Board
from services.notifier.service import Notifier
from services.scheduler.service import Scheduler
from valor.client import ValorClient
from valor.config import Approval

from .conftest import ALICE, CONFIG

APPROVING = msgspec.structs.replace(CONFIG, approval=Approval(max_steps=2, expire_after=600))
PLAN = "/plan\nsetup: echo: env\nwrite: echo: tests [after setup]\nrun: echo: go [after write]"


@pytest.fixture
async def chat(nc, world):
    """Alice's private chat with a whole Valor; yields (client, world, notifier, clock offset)."""
    world.user(ALICE, "alice", "Alice")
    offset = [0.0]
    scheduler = Scheduler(nc, config=APPROVING, clock=lambda: time.time() + offset[0])
    executor = Executor(nc, ["default", "respond"], slots=4, executor_id="approval-exec", ack_wait=5,
                        handlers={"respond": respond_handler(APPROVING, nc, env={})})
    ingest = Ingest(nc, world.inbound(), APPROVING)
    notifier = Notifier(nc, world.transport(), APPROVING)
    await executor.start()
    await scheduler.start()
    await ingest.start(reconcile_forever=False)
    await notifier.start()
    yield ValorClient(nc), world, notifier, offset
    await notifier.stop()
    await ingest.stop()
    await scheduler.stop()
    await executor.stop(grace=1)


async def said_to(world, message_id: int, containing: str, timeout: float = 15.0):
    """Valor's message replying to ``message_id`` that contains the words, once it is sent."""
    deadline = time.monotonic() + timeout
    while True:
        found = [m for m in world.sent if m.reply_to == message_id and containing in m.text]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, [m.text for m in world.sent if m.reply_to == message_id]
        await asyncio.sleep(0.05)


async def plan_shown(client, world) -> tuple[object, object, dict[str, int]]:
    """Alice asks for a three-step plan; returns her message, Valor's plan message and the plan's ids."""
    asked = await world.says(ALICE, ALICE, PLAN)
    shown = await said_to(world, asked.id, "✋ This plan waits")
    state = await client.projection()
    [respond] = [p for p in state.promises.values() if p.spec.message_id == asked.id and p.spec.task == "respond"]
    return asked, shown, respond.children


async def edited(world, message_id: int, containing: str, timeout: float = 15.0) -> str:
    """The latest text Valor edited message ``message_id`` to, once it contains the words."""
    deadline = time.monotonic() + timeout
    while True:
        texts = [text for _, mid, text in world.edits if mid == message_id]
        if texts and containing in texts[-1]:
            return texts[-1]
        assert time.monotonic() < deadline, texts[-1:]
        await asyncio.sleep(0.05)


async def test_the_plan_is_shown_and_go_in_reply_runs_it(chat):
    client, world, notifier, _ = chat
    asked, shown, ids = await plan_shown(client, world)
    setup, write, run = ids["setup"], ids["write"], ids["run"]
    assert shown.text == "\n".join([
        "Planned 3 tasks: setup; write (after setup); run (after write)",
        "",
        f"✋ 1. setup #{setup} — echo, awaiting approval",
        f"✋ 2. write #{write} — echo, awaiting approval, after #{setup}",
        f"✋ 3. run #{run} — echo, awaiting approval, after #{write}",
        texts.SHOW_HINT,
        "✋ This plan waits for your approval (3 steps, more than 2). Answer go or 👍 to run it, no to cancel it, "
        "or say what to change. Unanswered, it is cancelled in 10m."])
    assert {p.state for p in (await client.projection()).promises.values() if p.id in ids.values()} == {
        "awaiting_approval"}

    go = await world.says(ALICE, ALICE, "go", reply_to=shown.id)
    assert (await said_to(world, go.id, "Approved")).text == (
        f"Approved: #{setup} setup, #{write} write, #{run} run may run now.")
    assert await client.wait(list(ids.values()), timeout=15) == {pid: "succeeded" for pid in ids.values()}
    await said_to(world, asked.id, "✅ All 3 steps succeeded")
    checklist = await edited(world, shown.id, f"✅ 3. run #{run}")
    assert "✋" not in checklist  # the plan's reply no longer asks
    _, events = await client.promise(setup)
    assert [e.reason for e in events if type(e).__name__ == "Approved"] == ["approved in chat by Alice"]


async def test_no_cancels_every_step_naming_the_refusal(chat):
    client, world, notifier, _ = chat
    asked, shown, ids = await plan_shown(client, world)
    no = await world.says(ALICE, ALICE, "no", reply_to=shown.id)
    await said_to(world, no.id, "Rejected")
    assert await client.wait(list(ids.values()), timeout=15) == {pid: "cancelled" for pid in ids.values()}
    final = await said_to(world, asked.id, "❌ The plan ended")
    for n, (name, pid) in enumerate(ids.items(), 1):
        assert f"🚫 {n}. {name} #{pid} — cancelled: plan rejected in chat by Alice" in final.text


async def test_a_thumbs_up_approves_the_only_waiting_plan_without_a_reply(chat):
    client, world, notifier, _ = chat
    _, _, ids = await plan_shown(client, world)
    await world.says(ALICE, ALICE, "👍")
    assert await client.wait(list(ids.values()), timeout=15) == {pid: "succeeded" for pid in ids.values()}


async def test_an_edit_without_a_language_model_is_refused_with_the_reason(chat):
    client, world, notifier, _ = chat
    _, shown, ids = await plan_shown(client, world)
    edit = await world.says(ALICE, ALICE, "skip step 2", reply_to=shown.id)
    refused = await said_to(world, edit.id, "Without a language model")
    assert refused.text.startswith(f"Waiting for approval: #{ids['setup']} setup, #{ids['write']} write")
    assert {p.state for p in (await client.projection()).promises.values() if p.id in ids.values()} == {
        "awaiting_approval"}


async def test_an_unanswered_plan_is_cancelled_when_its_time_is_up_and_the_chat_is_told(chat):
    client, world, notifier, offset = chat
    asked, _, ids = await plan_shown(client, world)
    offset[0] = 600.0
    assert await client.wait(list(ids.values()), timeout=15) == {pid: "cancelled" for pid in ids.values()}
    final = await said_to(world, asked.id, "❌ The plan ended")
    for n, (name, pid) in enumerate(ids.items(), 1):
        assert f"🚫 {n}. {name} #{pid} — cancelled: not approved within 10m; nothing of the plan ran" in final.text


def test_a_single_waiting_task_is_shown_with_its_type_and_how_to_answer_in_the_reply():
    board = Board()
    for seq, e in enumerate([
        Created(at=0.0, id=1, title="fix it", task="respond", chat_id=ALICE, message_id=5),
        Succeeded(at=1.0, id=1, attempt=1, result={"reply": "Promised a code task: fix it",
                                                   "promises": [{"name": "code", "type": "code"}]}),
        Created(at=1.0, id=2, title="code", name="code", task="code", chat_id=ALICE, message_id=5, parent_id=1,
                awaits_approval="code work", approve_by=3601.0),
        Spawned(at=1.0, id=1, children={"code": 2}),
    ], 1):
        board.apply(e, seq)
    assert texts.respond_terminal(board.items[1], board) == (
        "Promised a code task: fix it\n\n#2 code (code)\n✋ This plan waits for your approval (code work). Answer go "
        "or 👍 to run it, no to cancel it, or say what to change. Unanswered, it is cancelled in 1h.")
    assert board.apply(Approved(at=2.0, id=2), 5) == {2, 1}  # its plan's messages are planned anew
    assert not board.items[2].awaiting
    assert texts.respond_terminal(board.items[1], board) == "Promised a code task: fix it\nPromised: #2 code"
