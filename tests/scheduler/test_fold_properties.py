"""Properties of the fold: replay is deterministic, duplicates change nothing, and the rules of the log.

Rules (DESIGN.md): the first terminal event wins; events about an attempt older
than the current one are ignored; an event that does not fit (an unknown
promise) is ignored and counted, never raised; a fold resumed after a prefix
equals the whole fold; apply is total on any well-typed event.
"""

import random
from collections import Counter
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from promises.projection import Projection
from promises.states import IN_FLIGHT, State
from schemas.commands import NewPromise as T
from schemas.events import (
    TERMINAL,
    Approved,
    AttemptFailed,
    Cancelled,
    Created,
    Dispatched,
    Failed,
    MessageReceived,
    NoticeIntended,
    Notified,
    Progress,
    PromiseEvent,
    RetryScheduled,
    Spawned,
    Started,
    Succeeded,
)
from services.scheduler import approval, intake
from services.scheduler.effects import Publish
from valor.config import parse

from .sim import Sim


def snapshot(state: Projection):
    return {pid: (p.state, p.attempt, p.result, p.error) for pid, p in state.promises.items()}


def random_history(seed: int) -> list:
    """Run a random DAG with random failures through the pure core; return its log.

    Half the histories are a chat's plan that waits for approval: approved,
    rejected, or left to expire at some random moment.
    """
    rng = random.Random(seed)
    held = rng.random() < 0.5
    config = parse(f"[approval]\ntypes = [\"noop\"]\nexpire_after = {rng.randint(1, 40)}") if held else None
    sim = Sim(capacity={"default": rng.randint(1, 4), "respond": 1}, config=config)
    log = []
    original_fold = sim.fold

    def fold(effects):
        log.extend(e.event for e in effects if isinstance(e, Publish))
        original_fold(effects)

    sim.fold = fold
    n = rng.randint(1, 8)
    tasks = [T(name=f"t{i}", retries=rng.randint(0, 2), backoff=0.0,
               after=[f"t{j}" for j in range(i) if rng.random() < 0.3]) for i in range(n)]
    answer_at, answer = rng.randint(0, 50), rng.choice([approval.approve, approval.approve, approval.reject])
    if held:  # a chat message whose respond promise plans the tasks
        sim.fold(intake.respond_for_message(sim.state, MessageReceived(chat_id=7, message_id=1, text="go"), sim.now))
    else:
        sim.submit(*tasks)
    for step in range(60):
        if held and step == answer_at:
            sim.fold(answer(sim.state, 1, sim.now, by="user")[0])
        sim.step()
        for item in sim.take():
            if item.task == "respond":
                done = [Started(at=sim.now, id=item.id, attempt=item.attempt),
                        Succeeded(at=sim.now, id=item.id, attempt=item.attempt,
                                  result={"reply": "ok", "promises": [msgspec.to_builtins(t) for t in tasks]})]
                log.extend(done)
                sim.record(*done)
                continue
            done = [Started(at=sim.now, id=item.id, attempt=item.attempt)]
            if rng.random() < 0.3:
                done.append(AttemptFailed(at=sim.now, id=item.id, attempt=item.attempt, error="x",
                                          retryable=rng.random() < 0.8))
            else:
                done.append(Succeeded(at=sim.now, id=item.id, attempt=item.attempt, result=item.id))
            log.extend(done)
            sim.record(*done)
        sim.now += 1
    return log


def fold(events) -> Projection:
    state = Projection()
    for seq, e in enumerate(events, 1):
        state.apply(e, seq)
    return state


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000))
def test_replaying_a_log_rebuilds_the_same_state(seed):
    log = random_history(seed)
    assert snapshot(fold(log)) == snapshot(fold(log))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.data())
def test_duplicated_events_change_nothing(seed, data):
    log = random_history(seed)
    if not log:
        return
    dupes = data.draw(st.lists(st.integers(0, len(log) - 1), max_size=10))
    noisy = list(log)
    for i in sorted(dupes, reverse=True):
        noisy.insert(i + 1, log[i])  # a redelivered copy right after the original
    assert snapshot(fold(noisy)) == snapshot(fold(log))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000))
def test_stale_sequence_numbers_are_ignored(seed):
    log = random_history(seed)
    state = fold(log)
    before = snapshot(state)
    for seq, e in enumerate(log, 1):  # the whole log again, at positions already applied
        assert not state.apply(e, seq)
    assert snapshot(state) == before


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000))
def test_every_promise_ends_and_cancellations_name_a_failed_cause(seed):
    state = fold(random_history(seed))
    for p in state.promises.values():
        assert p.terminal
        if p.state == "cancelled" and p.cause_id is None:  # refused or unanswered, before it ever ran
            assert p.spec.awaits_approval and p.attempt == 0
            assert p.error.startswith(("plan rejected by user", "not approved within"))
        elif p.state == "cancelled":
            assert state.promises[p.cause_id].state in ("failed", "cancelled")


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000))
def test_nothing_held_for_approval_is_dispatched_before_it_was_approved(seed):
    log = random_history(seed)
    approved = set()
    for e in log:
        if isinstance(e, Approved):
            approved.add(e.id)
        if isinstance(e, Dispatched):
            created = next(c for c in log if isinstance(c, Created) and c.id == e.id)
            assert created.awaits_approval is None or e.id in approved


# --- the rules of the log, one by one -------------------------------------------------

def full_snapshot(state: Projection):
    """Every fact and index a decision reads."""
    promises = {pid: (p.status, p.attempt, p.pending_deps, p.not_before, p.result, p.error, p.executor,
                      p.started_at, p.finished_at, p.children, p.spawn_error, tuple(p.notices), p.turn)
                for pid, p in state.promises.items()}
    return (promises, ready_lists(state), list(state.timed), list(state.deadlines), +state.in_flight,
            +state.key_in_flight, sorted(state.needs_decision), state.max_id, state.served, state.dispatches,
            {chat: list(ids) for chat, ids in state.unsettled.items()}, list(state.awaiting))


def ready_lists(state: Projection):
    """queue -> chat -> (priority, id); no empty lists (the fold drops a chat's once it empties)."""
    assert all(r for groups in state.ready.values() for r in groups.values())
    return {q: {chat: list(r) for chat, r in groups.items()} for q, groups in state.ready.items() if groups}


def fold_all(events, state: Projection | None = None, start: int = 1) -> Projection:
    state = state or Projection()
    for seq, e in enumerate(events, start):
        state.apply(e, seq)
    return state


def terminal_index(log, pid: int) -> int | None:
    return next((i for i, e in enumerate(log) if isinstance(e, TERMINAL) and e.id == pid), None)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.data())
def test_the_first_terminal_event_wins(seed, data):
    log = random_history(seed)
    ended = [e.id for e in log if isinstance(e, TERMINAL)]
    if not ended:
        return
    pid = data.draw(st.sampled_from(ended))
    first = terminal_index(log, pid)
    late = data.draw(st.sampled_from([
        Succeeded(id=pid, attempt=99, result="late"), Failed(id=pid, reason="late"),
        Cancelled(id=pid, reason="late", by="someone")]))
    where = data.draw(st.integers(first + 1, len(log)))
    noisy = log[:where] + [late] + log[where:]  # another writer's terminal event, after the first one
    assert full_snapshot(fold_all(noisy)) == full_snapshot(fold_all(log))

    created = next(i for i, e in enumerate(log) if isinstance(e, Created) and e.id == pid)
    early = data.draw(st.integers(created + 1, first))
    raced = log[:early] + [Cancelled(id=pid, reason="cancel won", by="user")] + log[early:]
    state = fold_all(raced)
    assert state.promises[pid].state == "cancelled" and state.promises[pid].error == "cancel won"


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.data())
def test_events_about_an_older_attempt_are_ignored(seed, data):
    log = random_history(seed)
    retried = [(i, e) for i, e in enumerate(log) if isinstance(e, Dispatched) and e.attempt >= 2]
    if not retried:
        return
    i, dispatched = data.draw(st.sampled_from(retried))
    old = data.draw(st.integers(1, dispatched.attempt - 1))
    pid = dispatched.id
    stale = data.draw(st.lists(st.sampled_from([
        Started(id=pid, attempt=old, executor="ghost"), Progress(id=pid, attempt=old, text="ghost"),
        Succeeded(id=pid, attempt=old, result="ghost"), AttemptFailed(id=pid, attempt=old, error="ghost"),
        Dispatched(id=pid, attempt=old), RetryScheduled(id=pid, next_attempt=old, not_before=0.0)]),
        min_size=1, max_size=6))
    where = data.draw(st.integers(i + 1, len(log)))
    noisy = log[:where] + stale + log[where:]
    expect, state = fold_all(log), fold_all(noisy)
    assert full_snapshot(state) == full_snapshot(expect)
    assert state.ignored == expect.ignored + len(stale)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.data())
def test_an_event_for_an_unknown_promise_is_ignored_and_counted(seed, data):
    log = random_history(seed)
    ghost = 10_000
    strangers = data.draw(st.lists(st.sampled_from([
        Dispatched(id=ghost, attempt=1), Started(id=ghost, attempt=1), Progress(id=ghost, attempt=1),
        Succeeded(id=ghost, attempt=1), AttemptFailed(id=ghost, attempt=1),
        RetryScheduled(id=ghost, next_attempt=2, not_before=0.0), Failed(id=ghost, reason="x"),
        Cancelled(id=ghost, reason="x"), Spawned(id=ghost, children={"a": 1}),
        Notified(id=ghost, kind="terminal", chat_id=1), NoticeIntended(id=ghost, kind="terminal", chat_id=1)]),
        min_size=1, max_size=8))
    where = data.draw(st.integers(0, len(log)))
    expect, state = fold_all(log), fold_all(log[:where] + strangers + log[where:])
    assert full_snapshot(state) == full_snapshot(expect)
    assert state.ignored == expect.ignored + len(strangers)
    assert ghost not in state.promises


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.data())
def test_replaying_a_prefix_then_the_rest_equals_replaying_the_whole(seed, data):
    log = random_history(seed)
    cut = data.draw(st.integers(0, len(log)))
    resumed = fold_all(log[cut:], fold_all(log[:cut]), start=cut + 1)
    assert full_snapshot(resumed) == full_snapshot(fold_all(log))
    # A follower that restarts and is handed the whole log again skips what it applied.
    again = fold_all(log, fold_all(log[:cut]))
    assert full_snapshot(again) == full_snapshot(fold_all(log))


# --- apply is total: any sequence of well-typed events --------------------------------

IDS = st.integers(0, 4)
SMALL = st.sampled_from([1, 1, 1, 2, 2, 0, 3])  # attempts: mostly ones that can fit
TIMES = st.floats(0, 2000, allow_nan=False)
TEXT = st.text(max_size=5)
ANY = st.none() | st.integers() | TEXT | st.dictionaries(TEXT, st.integers() | TEXT, max_size=3) | st.fixed_dictionaries(
    {"promises": st.lists(st.fixed_dictionaries({"name": TEXT}), max_size=2)})
FIELD_STRATEGIES = {
    "id": IDS, "attempt": SMALL, "next_attempt": SMALL, "max_attempts": SMALL, "priority": st.integers(1, 9),
    "depends_on": st.sampled_from([[], [], [], [1], [2], [1, 2]]), "queue": st.sampled_from(["default", "respond"]),
    "concurrency_key": st.none() | st.sampled_from(["k1", "k2"]), "task": st.sampled_from(["noop", "respond"]),
    "children": st.dictionaries(TEXT, IDS, max_size=2), "timeout": st.none() | st.floats(0.1, 100),
    "not_before": st.sampled_from([None, None, None, 5.0]), "at": TIMES, "chat_id": st.sampled_from([None, 7, 8]),
    "awaits_approval": st.sampled_from([None, None, "2 steps, more than 1"]), "approve_by": st.none() | TIMES,
    "kind": st.sampled_from(["terminal", "status", "reaction_end"]),
}


def event_strategy(cls):
    fields = {}
    for f in msgspec.structs.fields(cls):
        if f.name in FIELD_STRATEGIES:
            fields[f.name] = FIELD_STRATEGIES[f.name]
        elif f.type is Any or f.type == Any:
            fields[f.name] = ANY
        else:
            fields[f.name] = st.from_type(f.type)
    return st.builds(cls, **fields)


EVENTS = st.one_of([event_strategy(cls) for cls in PromiseEvent.__args__])
# Random events rarely fit a state; a few promises created up front make most of them land.
HISTORIES = st.tuples(st.lists(event_strategy(Created), min_size=1, max_size=4), st.lists(EVENTS, max_size=60)).map(
    lambda pair: pair[0] + pair[1])


def indexes_agree(state: Projection) -> None:
    """The derived indexes say what the promises' statuses say."""
    in_flight, keys = Counter(), Counter()
    for p in state.promises.values():
        if p.status in IN_FLIGHT:
            in_flight[p.spec.queue] += 1
            if p.spec.concurrency_key:
                keys[p.spec.concurrency_key] += 1
    assert +state.in_flight == in_flight and all(v >= 0 for v in state.in_flight.values())
    assert +state.key_in_flight == keys and all(v >= 0 for v in state.key_in_flight.values())
    queued = {(q, chat, prio, pid) for q, groups in ready_lists(state).items() for chat, r in groups.items()
              for prio, pid in r}
    assert queued == {(p.spec.queue, p.spec.chat_id, p.spec.priority, p.id)
                      for p in state.promises.values() if p.status == State.QUEUED}
    served: dict = {}
    for p in state.promises.values():  # a chat's last turn on a queue is its latest dispatched promise's
        if p.turn:
            chats = served.setdefault(p.spec.queue, {})
            chats[p.spec.chat_id] = max(chats.get(p.spec.chat_id, 0), p.turn)
    assert state.served == served and state.dispatches == max((p.turn for p in state.promises.values()), default=0)
    answering: dict = {}
    for p in sorted(state.promises.values(), key=lambda p: p.id):
        waiting_for_spawn = p.status == "succeeded" and p.children is None and p.spawn_error is None and (
            p.id in state.needs_decision)
        if p.spec.task == "respond" and p.spec.chat_id is not None and (not p.terminal or waiting_for_spawn):
            answering.setdefault(p.spec.chat_id, []).append(p.id)
    assert {chat: list(ids) for chat, ids in state.unsettled.items()} == answering
    assert list(state.awaiting) == sorted((p.spec.approve_by, p.id) for p in state.promises.values()
                                          if p.status == State.AWAITING and p.spec.approve_by is not None)
    assert state.applied + state.ignored >= len(state.promises)


@settings(max_examples=1000, deadline=None)
@given(st.one_of(st.lists(EVENTS, max_size=60), HISTORIES), st.booleans())
def test_apply_is_total_on_any_sequence_of_well_typed_events(events, with_seq):
    state = Projection()
    for seq, e in enumerate(events, 1):
        assert isinstance(state.apply(e, seq if with_seq else 0), bool)
    assert state.applied + state.ignored == len(events)
    indexes_agree(state)
    replay = Projection()
    for seq, e in enumerate(events, 1):
        replay.apply(e, seq if with_seq else 0)
    assert full_snapshot(replay) == full_snapshot(state)


def test_a_parent_succeeding_does_not_requeue_a_dependent_already_dispatched():
    """Found by the totality property: the fold trusts a stored ``dispatched`` (decision 16)."""
    state = fold_all([Created(id=1, title="parent"), Created(id=2, title="child", depends_on=[1]),
                      Dispatched(id=2, attempt=1), Dispatched(id=1, attempt=1), Succeeded(id=1, attempt=1)])
    assert state.promises[2].status == "dispatched"
    assert ready_lists(state) == {}
    indexes_agree(state)
