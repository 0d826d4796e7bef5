"""One plan, one message (decision 43): which notices a plan is owed and their texts.  Pure, plain boards.

A ``Chat`` here performs what ``plan.due`` asks as the outbox would (a send is
recorded as ``notice_intended`` and ``notified`` with a message id, an edit
changes what a message shows), so a plan's whole life can be played event by
event and the chat read at the end.
"""

from __future__ import annotations

import asyncio
import json

import msgspec
import pytest

from schemas.events import (
    AttemptFailed,
    Cancelled,
    CommandRun,
    Created,
    Evidence,
    Failed,
    FileChange,
    NoticeIntended,
    Notified,
    Progress,
    Spawned,
    Started,
    Succeeded,
)
from services.executor.respond import respond_handler
from services.executor.worker import Executor
from services.notifier import texts
from services.notifier.board import Board
from services.notifier.plan import CHECKLIST, Edit, Policy, React, Send, due
from services.scheduler.service import Scheduler
from valor.client import ValorClient
from valor.config import parse

from .conftest import ALICE, CONFIG, dies_before_recording, intents, notices, settle

CHAT, REQUEST = 501, 10
PLAN_REPLY = "Planned 3 tasks: setup; write (after setup); run (after write)"


class Chat:
    """Plays events into a board and performs every notice due after each, as the outbox would."""

    def __init__(self, policy: Policy = CHECKLIST) -> None:
        self.board, self.policy = Board(), policy
        self.sent: list[tuple[int, str, int | None, int]] = []  # (promise, kind, reply_to, message id)
        self.shows: dict[int, str] = {}  # message id -> the text it shows now
        self.edits = 0
        self.reactions: list[tuple[int, str]] = []
        self.next_message = 1000
        self.now = 100.0

    def play(self, *events) -> None:
        for event in events:
            self.now = max(self.now, event.at)
            touched = self.board.apply(event)
            self.settle(touched)

    def settle(self, touched: set[int]) -> None:
        while touched:
            more: set[int] = set()
            for pid in sorted(touched):
                for action in due(self.board, self.board.items[pid], self.now, 86400.0, self.policy):
                    more |= self.perform(action)
            touched = more

    def perform(self, action) -> set[int]:
        match action:
            case Send():
                assert action.kind not in self.board.items[action.id].notified, "sent twice"
                self.next_message += 1
                self.sent.append((action.id, action.kind, action.reply_to, self.next_message))
                self.shows[self.next_message] = action.text
                intent = NoticeIntended(id=action.id, kind=action.kind, chat_id=CHAT, reply_to=action.reply_to,
                                        parts=[texts.digest(p) for p in texts.split(action.text)], at=self.now)
                self.board.apply(intent)
                return self.board.apply(Notified(id=action.id, kind=action.kind, chat_id=CHAT,
                                                 telegram_message_id=self.next_message, at=self.now))
            case Edit():
                if self.shows[action.message_id] != action.text:
                    self.shows[action.message_id] = action.text
                    self.edits += 1
            case React():
                self.reactions.append((action.message_id, action.emoji))
                return self.board.apply(Notified(id=action.id, kind=action.kind, chat_id=CHAT,
                                                 telegram_message_id=action.message_id, at=self.now))
        return set()

    def message(self, pid: int, kind: str) -> str:
        [mid] = [m for p, k, _, m in self.sent if (p, k) == (pid, kind)]
        return self.shows[mid]


def respond(pid: int = 1, reply: str = PLAN_REPLY, names=("setup", "write", "run"), types=("echo",) * 3,
            at: float = 100.0) -> list:
    """A respond promise that answered with a chain of steps, ids pid+1, pid+2, ..., and its ``spawned``."""
    steps = [{"name": n, "type": t, "input": f"do {n}", "after": [names[i - 1]] if i else []}
             for i, (n, t) in enumerate(zip(names, types, strict=True))]
    created = [Created(id=pid, title="a plan please", task="respond", chat_id=CHAT, message_id=REQUEST, at=at),
               Started(id=pid, attempt=1, at=at + 0.1),
               Succeeded(id=pid, attempt=1, result={"reply": reply, "promises": steps}, duration=0.5, at=at + 0.6)]
    for i, (name, type_) in enumerate(zip(names, types, strict=True), 1):
        created.append(Created(id=pid + i, title=name, task=type_, input=f"do {name}", chat_id=CHAT,
                               message_id=REQUEST, parent_id=pid, name=name,
                               depends_on=[pid + i - 1] if i > 1 else [], at=at + 0.7))
    children = {name: pid + i for i, name in enumerate(names, 1)}
    return created + [Spawned(id=pid, children=children, at=at + 0.7)]


def ran(pid: int, at: float, result="ok", took: float = 2.0, **kw) -> list:
    return [Started(id=pid, attempt=1, at=at), Progress(id=pid, attempt=1, text="working", at=at + 0.5),
            Succeeded(id=pid, attempt=1, result=result, duration=took, at=at + took, **kw)]


def test_a_three_step_plan_is_one_checklist_edited_in_place_and_one_final_reply():
    chat = Chat()
    chat.play(*respond())
    assert [(p, k) for p, k, _, _ in chat.sent] == [(1, "terminal")]
    checklist = chat.message(1, "terminal")
    assert checklist.startswith(PLAN_REPLY + "\n\n")
    assert "🕓 1. setup #2 — queued" in checklist and "⏸ 2. write #3 — waiting for #2" in checklist
    assert "Promised:" not in checklist  # the checklist names the ids

    chat.play(*ran(2, 110.0, result="ready"))
    assert "✅ 1. setup #2 — 2.0s · ready" in chat.message(1, "terminal")
    chat.play(Started(id=3, attempt=1, at=113.0), Progress(id=3, attempt=1, text="writing tests", at=113.5))
    assert "⏳ 2. write #3 — running: writing tests" in chat.message(1, "terminal")
    chat.play(Succeeded(id=3, attempt=1, result={"text": "Wrote 2 tests.\nDetails follow."}, duration=1.5,
                        at=114.5))
    assert len(chat.sent) == 1 and chat.edits >= 3
    chat.play(*ran(4, 120.0, result={"stdout": "2 passed"}))

    assert [(p, k, r) for p, k, r, _ in chat.sent] == [(1, "terminal", REQUEST), (1, "final", REQUEST)]
    final = chat.message(1, "final")
    assert final.splitlines()[0] == "✅ All 3 steps succeeded in 21.3s."
    assert "✅ 2. write #3 — 1.5s · Wrote 2 tests." in final and "✅ 3. run #4 — 2.0s · 2 passed" in final
    assert texts.SHOW_HINT in final
    assert "✅ 3. run #4" in chat.message(1, "terminal")  # the checklist shows the end too
    assert chat.reactions == [(REQUEST, "👀"), (REQUEST, "✅")]


def test_a_plan_with_history_shows_its_estimate_in_its_checklist_and_a_single_task_in_its_reply():
    chat = Chat()
    events = respond(types=("code", "code", "echo"))
    events[3] = msgspec.structs.replace(events[3], estimate_usd=0.4, estimate_runs=3)
    events[4] = msgspec.structs.replace(events[4], estimate_usd=0.4, estimate_runs=3)
    chat.play(*events)
    assert ("💲 About $0.80 in all: $0.40 (estimate from the last 3 code runs), and 1 step with no history."
            in chat.message(1, "terminal"))
    alone = Chat()
    [*head, fix, spawned] = respond(10, reply="On it.", names=("fix",), types=("code",))
    alone.play(*head, msgspec.structs.replace(fix, estimate_usd=0.4, estimate_runs=3), spawned)
    assert alone.message(10, "terminal").endswith("💲 About $0.40 (estimate from the last 3 code runs).")


def test_each_mode_keeps_a_status_message_and_a_result_reply_per_step():
    chat = Chat(Policy(plan_notices="each"))
    chat.play(*respond(), *ran(2, 110.0), *ran(3, 113.0), *ran(4, 120.0))
    assert [(p, k) for p, k, _, _ in chat.sent] == [
        (1, "terminal"), (2, "status"), (2, "terminal"), (3, "status"), (3, "terminal"), (4, "status"),
        (4, "terminal")]
    assert chat.message(1, "terminal") == PLAN_REPLY + "\nPromised: #2 setup, #3 write (after #2), #4 run (after #3)"
    assert chat.reactions[-1] == (REQUEST, "✅")


def test_a_type_that_says_each_is_told_on_its_own_and_still_has_its_checklist_line():
    policy = Policy.of(parse('[types.shell]\nnotify = "each"\n'))
    chat = Chat(policy)
    chat.play(*respond(types=("echo", "shell", "echo")), *ran(2, 110.0), *ran(3, 113.0), *ran(4, 120.0))
    assert [(p, k) for p, k, _, _ in chat.sent] == [
        (1, "terminal"), (3, "status"), (3, "terminal"), (1, "final")]
    assert "✅ 2. write #3" in chat.message(1, "final")


def test_a_plan_whose_every_type_says_each_is_told_as_today():
    chat = Chat(Policy.of(parse('[telegram]\nplan_notices = "each"\n[types.echo]\nnotify = "each"\n')))
    chat.play(*respond(), *ran(2, 110.0), *ran(3, 113.0), *ran(4, 120.0))
    assert ("final" not in {k for _, k, _, _ in chat.sent}) and len(chat.sent) == 7


def test_a_type_that_says_checklist_joins_the_checklist_when_plans_are_told_each():
    chat = Chat(Policy.of(parse('[telegram]\nplan_notices = "each"\n[types.echo]\nnotify = "checklist"\n')))
    chat.play(*respond(), *ran(2, 110.0), *ran(3, 113.0), *ran(4, 120.0))
    assert [(p, k) for p, k, _, _ in chat.sent] == [(1, "terminal"), (1, "final")]


def test_a_single_promise_keeps_its_own_messages_and_its_evidence():
    chat = Chat()
    proof = Evidence(commands=[CommandRun(command="pytest -q", exit_code=0, check=True)],
                     files=[FileChange(path="app.py", status="added", added=3, removed=0)])
    chat.play(*respond(reply="Promised a code task: fix it", names=("code",), types=("code",)),
              *ran(2, 110.0, result={"text": "Fixed."}, evidence=proof))
    assert [(p, k) for p, k, _, _ in chat.sent] == [(1, "terminal"), (2, "status"), (2, "terminal")]
    assert chat.message(2, "terminal").endswith("Fixed.\n\n1 file changed (+3 −0) · ran `pytest -q`: exit 0")


def test_a_failed_step_and_the_cancelled_rest_end_the_plan_with_a_cross():
    chat = Chat()
    chat.play(*respond(), *ran(2, 110.0),
              Started(id=3, attempt=1, at=113.0),
              AttemptFailed(id=3, attempt=1, error="boom", at=114.0))
    assert "🔁 2. write #3 — attempt 1 failed, retrying: boom" in chat.message(1, "terminal")
    chat.play(Failed(id=3, reason="boom again", attempt=2, at=118.0),
              Cancelled(id=4, reason="dependency #3 failed", by="scheduler", cause_id=3, at=118.1))
    final = chat.message(1, "final")
    assert final.splitlines()[0] == "❌ The plan ended in 17.4s: 1 succeeded, 1 failed, 1 cancelled."
    assert "❌ 2. write #3 — failed after 5.0s: boom again" in final
    assert "🚫 3. run #4 — cancelled: dependency #3 failed" in final
    assert chat.reactions[-1] == (REQUEST, "❌")


def test_a_claude_code_step_shows_its_evidence_and_a_failed_check_warns():
    chat = Chat()
    failing = Evidence(commands=[CommandRun(command="pytest -q", exit_code=1, check=True)], cost_usd=0.05)
    chat.play(*respond(types=("echo", "echo", "code")), *ran(2, 110.0), *ran(3, 113.0),
              *ran(4, 120.0, result={"text": "The tests ran."}, evidence=failing))
    final = chat.message(1, "final")
    assert final.splitlines()[0] == "⚠️ All 3 steps succeeded in 21.3s, but the last check of #4 run failed."
    assert "⚠️ 3. run #4 — 2.0s · no files changed · ran `pytest -q`: exit 1 · $0.05" in final
    assert chat.reactions[-1] == (REQUEST, "❌")


def test_a_long_reply_keeps_its_words_and_the_checklist_gets_a_message_of_its_own():
    reply = "A long explanation. " * 150
    chat = Chat()
    chat.play(*respond(reply=reply), *ran(2, 110.0), *ran(3, 113.0), *ran(4, 120.0))
    assert [(p, k) for p, k, _, _ in chat.sent] == [(1, "terminal"), (1, "status"), (1, "final")]
    assert chat.message(1, "terminal").startswith(reply.strip()) and "Promised: #2 setup" in chat.message(1, "terminal")
    assert chat.message(1, "status").startswith("Plan of #1, 3 steps:\n✅ 1. setup #2")


@pytest.mark.parametrize("steps, reply", [(3, PLAN_REPLY), (40, "x" * texts.INLINE_REPLY), (300, "y" * 2000)])
def test_a_checklist_always_fits_one_message(steps, reply):
    names = tuple(f"step-{i}-{'n' * 40}" for i in range(steps))
    chat = Chat()
    chat.play(*respond(reply=reply, names=names, types=("echo",) * steps))
    for i in range(steps):  # every step running with a long progress line: the longest the checklist gets
        chat.play(Started(id=2 + i, attempt=1, at=110.0), Progress(id=2 + i, attempt=1, text="p" * 500, at=110.1))
    [shown] = [chat.shows[m] for p, k, _, m in chat.sent if k in ("terminal", "status") and "#2" in chat.shows[m]]
    assert len(shown) + shown.count("\n") <= texts.LIMIT  # each line's emoji counted twice, as UTF-16 would
    assert shown.endswith(texts.SHOW_HINT)
    if steps == 300:
        assert f"more: {steps - shown.count(' — running')} open" in shown


def test_a_retried_step_is_told_on_its_own():
    """``/retry`` copies a failed step: the copy names the plan's request but is no step of the plan."""
    chat = Chat()
    chat.play(*respond(), *ran(2, 110.0), Failed(id=3, reason="boom", at=112.0),
              Cancelled(id=4, reason="dependency #3 failed", at=112.1))
    copy = Created(id=9, title="write", task="echo", chat_id=CHAT, message_id=REQUEST, parent_id=1, name="write",
                   retry_of=3, at=130.0)
    chat.play(copy, *ran(9, 131.0))
    assert [(p, k) for p, k, _, _ in chat.sent] == [(1, "terminal"), (1, "final"), (9, "status"), (9, "terminal")]


def test_a_plan_running_longer_than_the_notice_horizon_still_gets_its_final_reply():
    chat = Chat()
    chat.play(*respond(), *ran(2, 110.0), *ran(3, 113.0))
    chat.play(*ran(4, 100.0 + 2 * 86400.0))
    assert [(p, k) for p, k, _, _ in chat.sent] == [(1, "terminal"), (1, "final")]


def test_a_plan_told_after_a_restart_resends_nothing_already_recorded():
    """A new board replays the log (notices included): the final is due once, the reply never again."""
    first = Chat()
    first.play(*respond(), *ran(2, 110.0), *ran(3, 113.0))
    log = [*respond(), *ran(2, 110.0), *ran(3, 113.0)]
    board = Board()
    for e in log:
        board.apply(e)
    for pid, kind, _, mid in first.sent:
        board.apply(Notified(id=pid, kind=kind, chat_id=CHAT, telegram_message_id=mid, at=120.0))
    board.apply(Succeeded(id=4, attempt=1, result="ok", duration=1.0, at=121.0))
    actions = due(board, board.items[1], 121.0, 86400.0)
    assert [(type(a).__name__, getattr(a, "kind", None)) for a in actions] == [
        ("Edit", None), ("Send", "final"), ("React", "reaction_end")]
    assert due(board, board.items[4], 121.0, 86400.0) == []


# --- end to end: the fake Telegram, real NATS, scheduler, executor and notifier ------------------


@pytest.fixture
def alice(world):
    world.user(ALICE, "alice", "Alice")
    return world


def replies_to(world, message_id):
    return [s for s in world.sent if s.chat_id == ALICE and s.reply_to == message_id]


def shown(world, message) -> str:
    """What a message shows now: its text as sent, or as last edited."""
    return next((t for _, m, t in reversed(world.edits) if m == message.id), message.text)


async def test_a_three_step_plan_sends_two_messages_in_all(js, engine, alice, services):
    start_ingest, start_notifier = services
    await start_ingest()
    notifier = await start_notifier()
    asked = await alice.says(ALICE, ALICE, "/steps")
    state, events = await settle(engine, notifier, expect_respond=1)
    plan = next(p for p in state.promises.values() if p.spec.task == "respond")
    assert alice.sent == replies_to(alice, asked.id) and len(alice.sent) == 2  # nothing else in the chat
    checklist, final = alice.sent
    ids = plan.children
    assert checklist.text.startswith("Three steps.\n\n")
    lines = shown(alice, checklist).splitlines()  # edited in place up to the end
    assert [line.split(" — ")[0] for line in lines[2:5]] == [
        f"✅ 1. setup #{ids['setup']}", f"✅ 2. write #{ids['write']}", f"✅ 3. run #{ids['run']}"]
    assert final.text.startswith("✅ All 3 steps succeeded in ") and f"✅ 3. run #{ids['run']} — " in final.text
    assert not [e for e in notices(events) if e.id in ids.values()]  # the steps said nothing of their own
    assert [e for _, m, e in alice.reactions if m == asked.id][-1] == "✅"
    steps = [state.promises[i] for i in ids.values()]
    assert [p.spec.title for p in steps] == ["setup", "write", "run"] and plan.spec.title == "/steps"


async def test_each_mode_sends_a_status_and_a_result_per_step(js, engine, alice, services):
    start_ingest, start_notifier = services
    await start_ingest()
    each = msgspec.structs.replace(CONFIG, telegram=msgspec.structs.replace(CONFIG.telegram, plan_notices="each"))
    notifier = await start_notifier(config=each)
    asked = await alice.says(ALICE, ALICE, "/steps")
    state, events = await settle(engine, notifier, expect_respond=1)
    steps = next(p for p in state.promises.values() if p.spec.task == "respond").children.values()
    assert sorted(e.id for e in notices(events, "terminal") if e.id in steps) == sorted(steps)
    statuses = [e for e in notices(events, "status") if e.id in steps]  # a step that ended unseen has none
    assert len(replies_to(alice, asked.id)) == 1 + 3 + len(statuses) and not notices(events, "final")


async def test_a_notifier_killed_before_recording_the_checklist_sends_it_once_and_brings_it_up_to_date(
        js, engine, alice, services):
    start_ingest, start_notifier = services
    await start_ingest()
    # Sent, never recorded: the notifier "dies" there.
    killed, die_before_recording = dies_before_recording("terminal")
    first = await start_notifier(record_hook=die_before_recording)
    asked = await alice.says(ALICE, ALICE, "/steps")
    await asyncio.wait_for(killed.wait(), 20)
    await first.stop()
    [checklist] = replies_to(alice, asked.id)  # sent, not recorded
    state = await engine.projection()
    plan = next(p for p in state.promises.values() if p.spec.task == "respond")
    await engine.wait(list(plan.children.values()), timeout=20)  # the plan ends while no notifier runs
    second = await start_notifier()
    _, events = await settle(engine, second, expect_respond=1)
    again, final = replies_to(alice, asked.id)
    assert again == checklist and final.text.startswith("✅ All 3 steps succeeded")
    assert second.outbox.stats["sent"] == 1 and second.outbox.stats["reconciled"] == 1  # found, not sent again
    assert f"✅ 3. run #{plan.children['run']}" in shown(alice, checklist)
    assert [e.telegram_message_id for e in notices(events, "terminal")] == [checklist.id]
    assert len(intents(events)) == 2 and len(notices(events, "final")) == 1


async def test_a_notifier_killed_before_recording_the_final_reply_does_not_send_it_twice(
        js, engine, alice, services):
    start_ingest, start_notifier = services
    await start_ingest()
    # Sent, never recorded: the notifier "dies" there.
    killed, die_before_recording = dies_before_recording("final")
    first = await start_notifier(record_hook=die_before_recording)
    asked = await alice.says(ALICE, ALICE, "/steps")
    await asyncio.wait_for(killed.wait(), 20)
    await first.stop()
    assert len(replies_to(alice, asked.id)) == 2
    second = await start_notifier()
    _, events = await settle(engine, second, expect_respond=1)
    assert len(replies_to(alice, asked.id)) == 2 and second.outbox.stats["sent"] == 0
    assert len(notices(events, "final")) == 1
    assert [e for _, m, e in alice.reactions if m == asked.id][-1] == "✅"


@pytest.fixture
async def agent(nc):
    """The real respond agent (commands, no model) instead of the tests' own answers."""
    scheduler = Scheduler(nc, config=CONFIG)
    executor = Executor(nc, ["default", "respond"], slots=8, executor_id="plan-exec", ack_wait=5,
                        handlers={"respond": respond_handler(CONFIG, nc, env={})})
    await executor.start()
    await scheduler.start()
    yield ValorClient(nc)
    await scheduler.stop()
    await executor.stop(grace=1)


async def test_replying_show_to_a_plan_s_message_answers_with_that_step_s_full_result(js, agent, alice, services):
    start_ingest, start_notifier = services
    await start_ingest()
    notifier = await start_notifier()
    asked = await alice.says(ALICE, ALICE, "/plan\nsetup: echo: set things up\nwrite: echo: write the tests "
                                           "[after setup]\nrun: echo: run them [after write]")
    state, _ = await settle(agent, notifier, expect_respond=1)
    checklist, final = replies_to(alice, asked.id)
    write = state.promises[next(p for p in state.promises.values() if p.spec.task == "respond").children["write"]]
    assert f"2. write #{write.id}" in final.text

    for asked_so_far, (text, to) in enumerate((("show 2", final), ("show write", checklist)), 2):
        question = await alice.says(ALICE, ALICE, text, reply_to=to.id)
        await settle(agent, notifier, expect_respond=asked_so_far)
        [answer] = replies_to(alice, question.id)
        assert answer.text.startswith(f'#{write.id} echo "write": succeeded on attempt 1')
        assert answer.text.endswith("Result:\n" + json.dumps(write.result, ensure_ascii=False))
