"""Whose ready promise goes next: the pure order (``fairness.turns``), then the decisions that use it."""

import pytest

from promises.projection import Projection
from schemas.commands import NewPromise as T
from schemas.events import AttemptFailed, MessageReceived, Spawned, Started, Succeeded
from services.scheduler import intake, snapshot
from services.scheduler.effects import Publish
from services.scheduler.fairness import turns
from valor.config import DEFAULT

from .sim import Sim

A, B, C = 101, 102, 103  # chats; None is the promises without a chat (the CLI's)

CASES = [
    # (what it pins, {chat: [(priority, id), ...]}, {chat: served}, the order)
    ("one chat: priority, then oldest", {A: [(1, 9), (5, 2), (5, 3)]}, {}, [9, 2, 3]),
    ("never served: the chat with the oldest promise first, then round-robin",
     {A: [(5, 1), (5, 2), (5, 3)], B: [(5, 4)]}, {}, [1, 4, 2, 3]),
    ("the chat served least recently goes first, even with younger promises",
     {A: [(5, 1), (5, 2), (5, 3)], B: [(5, 60)]}, {A: 7}, [60, 1, 2, 3]),
    ("a chat never served goes before any served one", {A: [(5, 1)], B: [(5, 2)]}, {A: 3, B: 1}, [2, 1]),
    ("three chats take turns, one promise each, in order of their last turn",
     {A: [(5, 1), (5, 2)], B: [(5, 3), (5, 4)], C: [(5, 5), (5, 6)]}, {A: 3, B: 1, C: 2}, [3, 5, 1, 4, 6, 2]),
    ("strict priority: a higher priority goes first whichever chat it is in; those turns count",
     {A: [(1, 5), (1, 6), (5, 1)], B: [(5, 2)]}, {}, [5, 6, 2, 1]),
    ("turns within a priority, then the next priority, where the chat that waited goes first",
     {A: [(2, 1), (2, 2), (5, 3)], B: [(2, 4), (5, 5)]}, {B: 9}, [1, 4, 2, 5, 3]),
    ("promises without a chat are one chat of their own",
     {None: [(5, 1), (5, 2), (5, 3)], A: [(5, 4)]}, {None: 5}, [4, 1, 2, 3]),
    ("a chat served long ago but idle since is not owed the missed turns",
     {A: [(5, 10), (5, 11), (5, 12)], B: [(5, 13), (5, 14)]}, {A: 50, B: 1}, [13, 10, 14, 11, 12]),
    ("nothing ready", {A: [], B: []}, {A: 1}, []),
]


@pytest.mark.parametrize(("ready", "served", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_turns(ready, served, expected):
    assert list(turns(ready, served)) == expected


def test_turns_read_one_promise_per_chat_for_the_first_turn():
    """A round with one free slot must not walk a backlog: each chat's list is read lazily."""
    read = []

    def backlog(chat, ids):
        for pid in ids:
            read.append(pid)
            yield (5, pid)

    order = turns({A: backlog(A, range(1, 100_000)), B: backlog(B, [100_000])}, {A: 1})
    assert next(order) == 100_000
    assert read == [1, 100_000]


# --- the decisions: a chat's 50-step plan and another chat's single task --------------------


def plan_in_chat(sim: Sim, chat: int, tasks: list[T], request_id: str) -> dict[str, int]:
    effects, ids = intake.create_plan(sim.state, tasks, sim.now, DEFAULT, request_id, chat_id=chat)
    sim.fold(effects)
    return ids


@pytest.mark.parametrize("slots", [1, 2, 4])
def test_another_chats_single_task_starts_within_one_slot_turn_of_a_50_step_plan(slots):
    sim = Sim(capacity={"default": slots})
    plan = plan_in_chat(sim, A, [T(name=f"step{i}", type="sleep") for i in range(50)], "plan")
    sim.step()
    running = sim.take()
    assert len(running) == slots and {i.id for i in running} <= set(plan.values())
    [single] = plan_in_chat(sim, B, [T(name="single", type="echo")], "single").values()
    sim.step()
    assert sim.take() == []  # every slot is taken: nothing starts, nothing jumps a running step
    sim.run(running[0])  # the first slot turn
    sim.step()
    assert [i.id for i in sim.take()] == [single]


def test_chats_take_turns_on_a_busy_queue_and_the_cli_is_a_chat_of_its_own():
    sim = Sim(capacity={"default": 1})
    a = plan_in_chat(sim, A, [T(name=f"a{i}") for i in range(3)], "a")
    b = plan_in_chat(sim, B, [T(name=f"b{i}") for i in range(3)], "b")
    cli = sim.submit(*[T(name=f"c{i}") for i in range(3)], request_id="cli")
    order = []
    for _ in range(9):
        sim.step()
        [item] = sim.take()
        order.append(item.id)
        sim.run(item)
    assert order == [a["a0"], b["b0"], cli["c0"], a["a1"], b["b1"], cli["c1"], a["a2"], b["b2"], cli["c2"]]


def test_a_higher_priority_in_one_chat_still_goes_before_another_chats_turn():
    sim = Sim(capacity={"default": 1})
    plan_in_chat(sim, A, [T(name="a0")], "a0")
    sim.step()
    [first] = sim.take()
    urgent = plan_in_chat(sim, A, [T(name="urgent", priority=1)], "urgent")["urgent"]
    waiting = plan_in_chat(sim, B, [T(name="b")], "b")["b"]
    sim.run(first)
    sim.step()
    [second] = sim.take()
    assert second.id == urgent  # A was served last, but priority is strict
    sim.run(second)
    sim.step()
    assert [i.id for i in sim.take()] == [waiting]


@pytest.mark.parametrize("restart", ["replay", "snapshot"])
def test_turns_carry_over_a_restart(restart):
    """The chat that was served goes after the one that was not, also when the projection is rebuilt."""
    sim = Sim(capacity={"default": 1})
    b = plan_in_chat(sim, B, [T(name=f"b{i}") for i in range(2)], "b")  # B's are older
    a = plan_in_chat(sim, A, [T(name=f"a{i}") for i in range(2)], "a")
    sim.step()
    [first] = sim.take()
    assert first.id == b["b0"]
    sim.run(first)
    if restart == "replay":
        sim.state = Projection()
        for seq, event in enumerate(sim.log, 1):
            sim.state.apply(event, seq)
    else:
        _, sim.state = snapshot.restore(snapshot.encode(sim.state, "stream", taken_at=1.0))
    sim.step()
    assert [i.id for i in sim.take()] == [a["a0"]]  # not b1, though older: B had its turn


# --- a chat's messages are answered in order --------------------------------------------------


def message(sim: Sim, chat: int, message_id: int) -> int:
    msg = MessageReceived(chat_id=chat, message_id=message_id, sender_id=1, text=f"message {message_id}")
    [created] = intake.respond_for_message(sim.state, msg, sim.now)
    sim.fold([created])
    return created.event.id


def dispatched(sim: Sim) -> list[int]:
    return [i.id for i in sim.take()]


def test_a_chats_next_message_is_answered_only_once_the_promises_of_the_one_before_exist():
    sim = Sim()
    first, second, third = (message(sim, A, m) for m in (1, 2, 3))
    other = message(sim, B, 1)
    sim.step()
    assert dispatched(sim) == [first, other]  # one at a time per chat; chats side by side
    sim.record(Started(id=first, attempt=1), Succeeded(id=first, attempt=1, result={
        "reply": "Planned", "promises": [{"name": "x", "type": "sleep"}]}))
    decision = sim.step()  # creates the plan and records spawned: the second may not start alongside
    assert any(isinstance(e, Publish) and isinstance(e.event, Spawned) for e in decision.effects)
    assert dispatched(sim) == []
    sim.step()  # spawned is in the log now: the plan's step and the next message start together
    assert dispatched(sim) == [sim.state.promises[first].children["x"], second]
    sim.record(Started(id=second, attempt=1), Succeeded(id=second, attempt=1, result={"reply": "Nothing is open."}))
    sim.step()  # a reply without promises or commands settles with its success
    assert dispatched(sim) == [third]


def test_a_message_whose_answer_is_retried_keeps_the_next_one_waiting():
    sim = Sim()
    first, second = message(sim, A, 1), message(sim, A, 2)
    sim.step()
    assert dispatched(sim) == [first]
    sim.record(Started(id=first, attempt=1), AttemptFailed(id=first, attempt=1, error="model away"))
    sim.step()  # the retry is scheduled
    assert dispatched(sim) == [] and sim.state_of(first) == "retrying"
    sim.now += 60
    sim.step()
    assert dispatched(sim) == [first]
    sim.record(Started(id=first, attempt=2), Succeeded(id=first, attempt=2, result={"reply": "ok"}))
    sim.step()
    assert dispatched(sim) == [second]
