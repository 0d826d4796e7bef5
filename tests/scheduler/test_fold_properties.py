"""Properties of the fold: replay is deterministic, duplicates change nothing."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.commands import NewPromise as T
from schemas.events import AttemptFailed, Started, Succeeded
from services.scheduler.effects import Publish
from services.scheduler.projection import Projection

from .sim import Sim


def snapshot(state: Projection):
    return {pid: (p.state, p.attempt, p.result, p.error) for pid, p in state.promises.items()}


def random_history(seed: int) -> list:
    """Run a random DAG with random failures through the pure core; return its log."""
    rng = random.Random(seed)
    sim = Sim(capacity={"default": rng.randint(1, 4)})
    log = []
    original_fold = sim.fold

    def fold(effects):
        log.extend(e.event for e in effects if isinstance(e, Publish))
        original_fold(effects)

    sim.fold = fold
    n = rng.randint(1, 8)
    tasks = [T(name=f"t{i}", retries=rng.randint(0, 2), backoff=0.0,
               after=[f"t{j}" for j in range(i) if rng.random() < 0.3]) for i in range(n)]
    sim.submit(*tasks)
    for _ in range(60):
        sim.step()
        for item in sim.take():
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
        if p.state == "cancelled":
            assert p.cause_id is not None and state.promises[p.cause_id].state in ("failed", "cancelled")
