"""The scheduler's decisions, driven with plain values and a simulated clock."""

import pytest

from schemas.commands import NewPromise as T
from schemas.commands import Submit
from schemas.events import Attachment, AttemptFailed, MessageReceived, Started, Succeeded
from services.scheduler import intake
from services.scheduler.effects import Publish
from services.scheduler.projection import Projection

from .sim import Sim


def test_independent_promises_are_dispatched_together():
    sim = Sim()
    sim.submit(T(name="a"), T(name="b"), T(name="c"))
    sim.step()
    assert sorted(i.id for i in sim.take()) == [1, 2, 3]


def test_chain_runs_in_order_and_passes_results():
    sim = Sim()
    ids = sim.submit(T(name="setup", type="echo"), T(name="write", type="echo", after=["setup"]),
                     T(name="run", type="echo", after=["write"]))
    sim.step()
    [setup] = sim.take()
    assert setup.id == ids["setup"]
    sim.run(setup, {"env": "ok"})
    sim.step()
    [write] = sim.take()
    assert write.id == ids["write"] and write.deps == {str(ids["setup"]): {"env": "ok"}}


def test_dependent_waits_for_both_parents():
    sim = Sim()
    ids = sim.submit(T(name="a"), T(name="b"), T(name="join", after=["a", "b"]))
    sim.step()
    a, b = sim.take()
    sim.run(a, "A")
    sim.step()
    assert sim.take() == [] and sim.state_of(ids["join"]) == "waiting"
    sim.run(b, "B")
    sim.step()
    [join] = sim.take()
    assert join.deps == {str(ids["a"]): "A", str(ids["b"]): "B"}


def test_higher_priority_goes_first_when_capacity_is_short():
    sim = Sim(capacity={"default": 1})
    sim.submit(T(name="low", priority=9), T(name="mid", priority=5), T(name="high", priority=1))
    sim.step()
    [first] = sim.take()
    assert sim.state.promises[first.id].spec.name == "high"
    sim.run(first)
    sim.step()
    [second] = sim.take()
    assert sim.state.promises[second.id].spec.name == "mid"


def test_equal_priority_goes_oldest_first():
    sim = Sim(capacity={"default": 1})
    sim.submit(T(name="a"), T(name="b"))
    sim.step()
    assert [i.id for i in sim.take()] == [1]


def test_dispatch_ahead_gives_every_slot_its_next_item_in_priority_order():
    from valor.config import parse

    sim = Sim(capacity={"default": 2}, config=parse("[queues.default]\ndispatch_ahead = 1.0\n"))
    sim.submit(*[T(name=f"p{p}", priority=p) for p in (9, 8, 7, 6, 5, 1)])
    sim.step()
    assert [sim.state.promises[i.id].spec.priority for i in sim.take()] == [1, 5, 6, 7]
    sim.step()
    assert sim.take() == []  # two running and two waiting in WORK: that is the bound


def test_dispatch_ahead_of_one_queue_leaves_the_others_exact():
    from valor.config import parse

    sim = Sim(capacity={"default": 1, "code": 1}, config=parse("[queues.default]\ndispatch_ahead = 2.0\n"))
    sim.submit(*[T(name=f"d{i}") for i in range(5)], *[T(name=f"c{i}", queue="code") for i in range(3)])
    sim.step()
    queues = [sim.state.promises[i.id].spec.queue for i in sim.take()]
    assert queues.count("default") == 3 and queues.count("code") == 1


def test_dispatch_ahead_never_parks_work_for_a_queue_nobody_serves():
    from valor.config import parse

    sim = Sim(capacity={}, config=parse("[queues.default]\ndispatch_ahead = 4.0\n"))
    sim.submit(T(name="a"))
    assert sim.step().effects == []


def test_nothing_is_dispatched_without_capacity():
    sim = Sim(capacity={})
    sim.submit(T(name="a"))
    assert sim.step().effects == []
    assert sim.state_of(1) == "queued"


def test_concurrency_key_limits_running_attempts():
    sim = Sim()
    sim.submit(*[T(name=f"t{i}", key="repo", key_limit=2) for i in range(5)], T(name="free"))
    sim.step()
    first = sim.take()
    assert sorted(i.id for i in first) == [1, 2, 6]
    sim.run(first[0])
    sim.step()
    assert [i.id for i in sim.take()] == [3]


def test_retryable_failure_schedules_a_retry_with_growing_delay():
    sim = Sim()
    sim.submit(T(name="f", type="fail", retries=3, backoff=0.2))
    delays = []
    for attempt in (1, 2):
        sim.step()
        [item] = sim.take()
        assert item.attempt == attempt
        sim.record(Started(at=sim.now, id=1, attempt=attempt), AttemptFailed(at=sim.now, id=1, attempt=attempt, error="boom"))
        d = sim.step()
        [retry] = [e.event for e in d.effects if isinstance(e, Publish)]
        assert retry.next_attempt == attempt + 1 and sim.state_of(1) == "retrying"
        delays.append(retry.delay)
        assert sim.step().effects == []  # not before its time
        sim.now = retry.not_before
    assert 0.18 <= delays[0] <= 0.22 and 0.36 <= delays[1] <= 0.44
    sim.step()
    [third] = sim.take()
    assert third.attempt == 3


def test_failure_after_last_retry_fails_and_cancels_dependents_naming_it():
    sim = Sim()
    ids = sim.submit(T(name="a", retries=0), T(name="b", after=["a"]), T(name="c", after=["b"]))
    sim.step()
    [a] = sim.take()
    sim.record(Started(id=a.id, attempt=1), AttemptFailed(id=a.id, attempt=1, error="disk full", retryable=True))
    sim.settle()
    pa, pb, pc = (sim.state.promises[ids[n]] for n in "abc")
    assert pa.state == "failed" and pa.error == "disk full (after 1 attempt)"
    assert pb.state == "cancelled" and pb.error.startswith(f"dependency #{ids['a']} failed: disk full")
    assert pc.state == "cancelled" and pc.cause_id == ids["a"]


def test_non_retryable_failure_fails_at_once():
    sim = Sim()
    sim.submit(T(name="a", retries=5))
    sim.step()
    [a] = sim.take()
    sim.record(Started(id=1, attempt=1), AttemptFailed(id=1, attempt=1, error="bad input", retryable=False))
    sim.settle()
    assert sim.state_of(1) == "failed" and "not retryable" in sim.state.promises[1].error


def test_cancel_ends_a_running_promise_and_its_dependents():
    sim = Sim()
    ids = sim.submit(T(name="a"), T(name="b", after=["a"]))
    sim.step()
    sim.take()
    sim.record(Started(id=ids["a"], attempt=1))
    effects, reply = intake.cancel(sim.state, ids["a"], sim.now, "changed my mind", by="alice")
    assert reply.ok
    sim.fold(effects)
    sim.settle()
    assert sim.state_of(ids["a"]) == "cancelled" and sim.state.promises[ids["a"]].cancelled_by == "alice"
    assert sim.state_of(ids["b"]) == "cancelled"
    # the late result of the cancelled attempt is ignored: first terminal wins
    assert not sim.state.apply(Succeeded(id=ids["a"], attempt=1, result="late"), 999)
    assert sim.state_of(ids["a"]) == "cancelled"


def test_delayed_promise_waits_for_not_before():
    sim = Sim()
    sim.submit(T(name="later", delay=30))
    d = sim.step()
    assert sim.take() == [] and d.wake_at == sim.now + 30 and sim.state_of(1) == "waiting"
    sim.now += 30
    sim.step()
    assert [i.id for i in sim.take()] == [1]


def test_silent_executor_past_timeout_gets_a_retryable_failure():
    sim = Sim()
    sim.submit(T(name="slow", timeout=10, retries=1))
    sim.step()
    sim.take()
    sim.record(Started(at=sim.now, id=1, attempt=1, executor="e1"))
    assert sim.step().effects == []
    sim.now += 10 + 5
    d = sim.step()
    [failed] = [e.event for e in d.effects]
    assert isinstance(failed, AttemptFailed) and "timed out after 10s" in failed.error
    sim.step()
    assert sim.state_of(1) == "retrying"


def test_submission_is_idempotent_per_request():
    sim = Sim()
    first = sim.submit(T(name="a"), T(name="b", after=["a"]), request_id="same")
    again = Submit(request_id="same", tasks=[T(name="a"), T(name="b", after=["a"])])
    effects, reply = intake.submit(sim.state, again, sim.now)
    assert effects == [] and reply.ids == first


@pytest.mark.parametrize("text, attachments, title", [
    ("fix the   flaky\nlogin test", [], "fix the flaky login test"),
    ("x" * 100, [], "x" * 59 + "…"),
    ("", ["photo.jpg"], "photo.jpg"),
    ("", [], "message 7"),
])
def test_a_respond_promise_is_titled_by_the_start_of_its_message(text, attachments, title):
    msg = MessageReceived(chat_id=42, message_id=7, sender_id=1, text=text,
                          attachments=[Attachment(name=n, path=f"inbox/42/7-{n}") for n in attachments])
    [created] = intake.respond_for_message(Projection(), msg, 1.0)
    assert created.event.title == title


def test_a_promises_cost_cap_is_its_own_or_its_types_fixed_in_created():
    from valor.config import parse
    config = parse("[types.code]\nmax_cost = 2.0\n")
    effects, _ = intake.submit(Projection(), Submit(request_id="caps", tasks=[
        T(name="typed", type="code"), T(name="own", type="code", max_cost=0.5), T(name="none", type="echo")]),
        100.0, config)
    assert [e.event.max_cost for e in effects if isinstance(e, Publish)] == [2.0, 0.5, None]
