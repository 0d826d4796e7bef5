"""Plans that wait for approval, with plain values: the threshold rule, the fold, and the decisions.

The clock is ``Sim.now``: expiry is a timer ``decide`` sees with time as an input.
"""

import msgspec
import pytest

from promises import story
from promises.projection import Projection
from schemas.commands import NewPromise as T
from schemas.events import Approved, Created, MessageReceived, Succeeded
from services.scheduler import approval, intake, snapshot
from services.scheduler.effects import Publish
from valor.config import Approval, parse

from .sim import Sim

CHAIN = [T(name="setup", type="echo"), T(name="write", type="code", after=["setup"]),
         T(name="run", type="echo", after=["write"])]
RULES = parse('[approval]\nmax_steps = 2\ntypes = ["code"]\nexpire_after = 3600\n')


# --- the threshold rule ----------------------------------------------------------------


@pytest.mark.parametrize("rules, tasks, reason", [
    (Approval(), CHAIN, None),  # off by default: every plan runs at once
    (Approval(max_steps=3), CHAIN, None),
    (Approval(max_steps=2), CHAIN, "3 steps, more than 2"),
    (Approval(types=["code"]), CHAIN, "code work"),
    (Approval(types=["code"]), CHAIN[:1], None),
    (Approval(types=["code", "echo", "shell"]), CHAIN, "code and echo work"),
    (Approval(max_steps=1, types=["code"]), CHAIN, "3 steps, more than 1; code work"),
])
def test_a_plan_waits_when_it_has_more_steps_than_allowed_or_a_gated_type(rules, tasks, reason):
    assert approval.needs_approval(tasks, rules) == reason


def test_a_held_plan_records_why_and_until_when():
    assert approval.hold(CHAIN, Approval(max_steps=2, expire_after=60), now=1000.0) == {
        "awaits_approval": "3 steps, more than 2", "approve_by": 1060.0}
    assert approval.hold(CHAIN, Approval(max_steps=2, expire_after=0), now=1000.0) == {
        "awaits_approval": "3 steps, more than 2", "approve_by": None}
    assert approval.hold(CHAIN, Approval(max_steps=5), now=1000.0) == {}


@pytest.mark.parametrize("seconds, text", [(86400, "1d"), (3600, "1h"), (5400, "1h30m"), (90, "1m30s"),
                                           (45, "45s"), (0.4, "0s"), (90061, "1d1h")])
def test_how_long_a_plan_waits_reads_as_a_later_delay(seconds, text):
    assert story.waited(seconds) == text


# --- the life of a held plan ------------------------------------------------------------------


def chat_plan(sim: Sim, tasks=CHAIN, message_id: int = 1, chat_id: int = 7) -> dict[str, int]:
    """A chat message whose respond promise plans ``tasks``; returns the plan's ids."""
    msg = MessageReceived(chat_id=chat_id, message_id=message_id, text="do it all")
    sim.fold(intake.respond_for_message(sim.state, msg, sim.now, sim.config))
    sim.step()
    [respond] = sim.take()
    sim.run(respond, {"reply": "Planned.", "promises": [msgspec.to_builtins(t) for t in tasks]})
    sim.step()
    return sim.state.promises[respond.id].children


def test_a_chat_plan_above_the_threshold_is_created_awaiting_approval_and_nothing_is_dispatched():
    sim = Sim(config=RULES)
    ids = chat_plan(sim)
    assert {sim.state_of(i) for i in ids.values()} == {"awaiting_approval"}
    spec = sim.state.promises[ids["setup"]].spec
    assert (spec.awaits_approval, spec.approve_by) == ("3 steps, more than 2; code work", sim.now + 3600)
    sim.now += 3599
    sim.settle()
    assert sim.take() == [] and sim.state.ready_count("default") == 0


def test_a_plan_under_the_threshold_and_a_cli_plan_run_at_once():
    sim = Sim(config=RULES)
    [one] = chat_plan(sim, [T(name="one", type="echo")]).values()
    cli = sim.submit(*CHAIN, request_id="cli")  # the operator's own plan
    sim.step()
    assert {i.id for i in sim.take()} == {one, cli["setup"]}


def test_approving_any_step_lets_the_whole_plan_run_in_order():
    sim = Sim(capacity={"default": 4, "code": 1, "respond": 1}, config=RULES)
    ids = chat_plan(sim)
    effects, reply = approval.approve(sim.state, ids["write"], sim.now, by="cli", reason="approved by the operator")
    assert reply.ok and reply.ids == ids
    assert [e.event for e in effects] == [Approved(at=sim.now, id=i, by="cli", reason="approved by the operator")
                                          for i in ids.values()]
    sim.fold(effects)
    assert [sim.state_of(i) for i in ids.values()] == ["queued", "waiting", "waiting"]
    for name in ("setup", "write", "run"):
        sim.step()
        [item] = sim.take()
        assert item.id == ids[name]
        sim.run(item, name)
    assert {sim.state_of(i) for i in ids.values()} == {"succeeded"}


def test_the_respond_promise_that_made_the_plan_stands_for_it():
    sim = Sim(config=RULES)
    ids = chat_plan(sim)
    respond = sim.state.promises[ids["setup"]].spec.parent_id
    effects, reply = approval.approve(sim.state, respond, sim.now)
    assert reply.ok and [e.event.id for e in effects] == list(ids.values())


def test_rejecting_cancels_every_step_naming_the_refusal_and_runs_nothing():
    sim = Sim(config=RULES)
    ids = chat_plan(sim)
    effects, reply = approval.reject(sim.state, ids["run"], sim.now, by="respond #1",
                                     reason="plan rejected in chat by Ana")
    assert reply.ok
    sim.fold(effects)
    sim.settle()
    assert sim.take() == []
    for pid in ids.values():
        p = sim.state.promises[pid]
        assert (p.state, p.error, p.cancelled_by, p.cause_id) == (
            "cancelled", "plan rejected in chat by Ana", "respond #1", None)


def test_an_unanswered_plan_is_cancelled_when_its_time_runs_out_saying_so():
    sim = Sim(config=RULES)
    ids = chat_plan(sim)
    expires = sim.now + 3600
    decision = sim.step()
    assert decision.effects == [] and decision.wake_at == expires  # the scheduler wakes for it
    sim.now = expires - 0.001
    assert sim.step().effects == []
    sim.now = expires
    sim.settle()
    for pid in ids.values():
        p = sim.state.promises[pid]
        assert (p.state, p.error, p.cancelled_by) == ("cancelled", "not approved within 1h; nothing of the plan ran",
                                                      "scheduler")
    assert sim.take() == [] and sim.step().wake_at is None


def test_a_plan_set_never_to_expire_waits_without_a_timer():
    sim = Sim(config=parse('[approval]\ntypes = ["code"]\nexpire_after = 0\n'))
    ids = chat_plan(sim)
    sim.now += 10 * 86400
    assert sim.step().wake_at is None and sim.state_of(ids["write"]) == "awaiting_approval"


@pytest.mark.parametrize("first, then, error", [
    (approval.approve, approval.reject, "is not awaiting approval (it is queued)"),
    (approval.reject, approval.approve, "is not awaiting approval (it is cancelled)"),
    (approval.approve, approval.approve, "is not awaiting approval (it is queued)"),
])
def test_a_plan_is_answered_once(first, then, error):
    sim = Sim(config=RULES)
    ids = chat_plan(sim)
    sim.fold(first(sim.state, ids["setup"], sim.now)[0])
    effects, reply = then(sim.state, ids["setup"], sim.now)
    assert effects == [] and reply.error == f"#{ids['setup']} {error}"


def test_a_late_approval_after_the_expiry_is_refused_and_changes_nothing():
    sim = Sim(config=RULES)
    ids = chat_plan(sim)
    sim.now += 3600
    sim.settle()
    effects, reply = approval.approve(sim.state, ids["setup"], sim.now)
    assert effects == [] and not reply.ok
    # Stored anyway (another scheduler that decided on an older view): the fold ignores it.
    assert not sim.state.apply(Approved(id=ids["setup"]), sim.seq + 1)
    assert sim.state_of(ids["setup"]) == "cancelled"


def test_a_chat_answers_only_its_own_plans():
    sim = Sim(config=RULES)
    ids = chat_plan(sim)
    effects, reply = approval.approve(sim.state, ids["setup"], sim.now, chat_id=8)
    assert effects == [] and reply.error == f"no promise #{ids['setup']}"
    assert approval.approve(sim.state, 999, sim.now)[1].error == "no promise #999"


def test_a_respond_result_approves_and_rejects_through_its_commands():
    sim = Sim(config=RULES)
    first, second = chat_plan(sim, message_id=1), chat_plan(sim, message_id=2)
    answer = {"reply": "ok", "commands": [
        {"verb": "approve", "id": first["run"], "reason": "approved in chat by Ana"},
        {"verb": "reject", "id": second["setup"], "reason": "plan rejected in chat by Ana"}]}
    sim.fold(intake.respond_for_message(sim.state, MessageReceived(chat_id=7, message_id=3, text="go"), sim.now))
    sim.step()
    [respond] = sim.take()
    sim.run(respond, answer)
    sim.settle()
    assert [i.id for i in sim.take()] == [first["setup"]]
    assert sim.state.promises[first["write"]].spec.awaits_approval  # the fact of its creation stays
    assert {sim.state_of(i) for i in second.values()} == {"cancelled"}
    assert sim.state.promises[second["setup"]].cancelled_by == f"respond #{respond.id}"


def test_a_dependency_outside_the_plan_that_ends_badly_cancels_a_held_step():
    sim = Sim(config=RULES)
    [outside] = sim.submit(T(name="outside", type="sleep"), request_id="cli").values()
    sim.step()
    sim.take()
    ids = chat_plan(sim, [T(name="after", type="code", depends_on=[outside])])
    assert sim.state_of(ids["after"]) == "awaiting_approval"
    sim.fold(intake.cancel(sim.state, outside, sim.now, "gone")[0])
    sim.settle()
    held = sim.state.promises[ids["after"]]
    assert (held.state, held.cause_id, held.error) == ("cancelled", outside, f"dependency #{outside} was cancelled: gone")
    assert list(sim.state.awaiting) == []


# --- restored from a snapshot ----------------------------------------------------------------


def test_a_snapshot_of_a_held_plan_restores_it_held_and_still_expiring():
    sim = Sim(config=RULES)
    ids = chat_plan(sim)
    _, restored = snapshot.restore(snapshot.encode(sim.state, "created", taken_at=1.0))
    assert list(restored.awaiting) == list(sim.state.awaiting) == [(sim.now + 3600, i) for i in ids.values()]
    assert restored.ready_count("default") == 0
    effects = approval.expire(restored, sim.now + 3600, set())
    assert [e.event.id for e in effects] == list(ids.values())


def test_an_approved_step_with_a_start_time_is_timed_after_approval():
    state = Projection()
    events = [Created(at=0.0, id=1, title="later", not_before=50.0, awaits_approval="code work", approve_by=100.0),
              Approved(at=10.0, id=1)]
    for seq, e in enumerate(events, 1):
        assert state.apply(e, seq)
    assert list(state.timed) == [(50.0, 1)] and list(state.awaiting) == []
    assert state.promises[1].state == "waiting"
    assert [e.event.id for e in intake.cancel(state, 1, 20.0)[0] if isinstance(e, Publish)] == [1]
    assert not state.apply(Succeeded(id=1, attempt=1), 3)
