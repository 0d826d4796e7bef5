"""Promise and attempt rows from events: pure, no NATS, no DuckDB."""

from schemas.events import AttemptFailed, Cancelled, Created, Dispatched, RetryScheduled, Started, Succeeded
from valor.analytics.derive import derive, fold_set
from valor.analytics.tables import COLUMNS

T0 = 1000.0
PROMISE = [c for c, _ in COLUMNS["promises"]]
ATTEMPT = [c for c, _ in COLUMNS["attempts"]]


def rows(events, refresh):
    promises, attempts = derive(list(enumerate(events, start=1)), refresh)
    return [dict(zip(PROMISE, r, strict=True)) for r in promises], [dict(zip(ATTEMPT, r, strict=True)) for r in attempts]


def test_a_retried_then_cancelled_promise_has_one_row_per_attempt_with_its_outcome():
    [p], attempts = rows([
        Created(id=1, title="t", task="fail", max_attempts=3, at=T0),
        Dispatched(id=1, attempt=1, at=T0 + 1),
        Started(id=1, attempt=1, executor="a", at=T0 + 2),
        AttemptFailed(id=1, attempt=1, error="boom", duration=0.5, at=T0 + 3),
        RetryScheduled(id=1, next_attempt=2, not_before=T0 + 4, at=T0 + 3),
        Dispatched(id=1, attempt=2, at=T0 + 4),
        Started(id=1, attempt=2, executor="b", at=T0 + 5),
        Cancelled(id=1, reason="stop", by="cli", at=T0 + 7),
        Succeeded(id=1, attempt=2, at=T0 + 8),  # too late: the first terminal event won
    ], {1})
    assert (p["state"], p["attempts"], p["executor"], p["error"], p["cancelled_by"]) == ("cancelled", 2, "b", "stop", "cli")
    assert (p["dispatched_at"], p["started_at"], p["finished_at"], p["duration"], p["turnaround"]) == (
        T0 + 1, T0 + 2, T0 + 7, 5.0, 7.0)
    assert [(a["attempt"], a["executor"], a["outcome"], a["error"], a["duration"]) for a in attempts] == [
        (1, "a", "failed", "boom", 0.5), (2, "b", "cancelled", "stop", 2.0)]


def test_a_dependent_is_queued_once_its_dependency_succeeded_and_waiting_before():
    events = [Created(id=1, title="a", at=T0), Created(id=2, title="b", depends_on=[1], at=T0),
              Dispatched(id=1, attempt=1, at=T0), Started(id=1, attempt=1, at=T0)]
    assert rows(events, {2})[0][0]["state"] == "waiting"
    done = [*events, Succeeded(id=1, attempt=1, at=T0 + 1)]
    assert rows(done, {2})[0][0]["state"] == "queued"
    assert fold_set({2}, {2: [1]}) == {1, 2}
