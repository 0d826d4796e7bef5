"""Budgets against a real nats-server and the real scheduler; the test plays ingest and the executor.

What a chat spent is in the log (each attempt's end event), so the scheduler
holds the chat's next plan once its budget is spent, saying how much is left,
and an owner's ``/budget`` (a ``budget`` command in the respond result) is
recorded as ``budget_adjusted`` and counted from then on (decision 49).
"""

import time

from schemas import subjects
from schemas.events import BudgetAdjusted, Evidence, MessageReceived, Started, Succeeded, encode
from valor import bus
from valor.client import ValorClient
from valor.config import parse

from .test_approval_service import eventually, never_dispatched
from .test_service import announce, take_work
from .test_snapshot_restart import until

OWNER, GUEST = 123, 456
CONFIG = parse("[budgets]\nchat_daily = 1.0\nowners = [123]\n")
CODE_PLAN = {"reply": "On it.", "promises": [{"name": "fix", "type": "code", "input": "fix it"}]}


async def spend(js, item, result=None, usd: float = 0.0) -> None:
    """The attempt's start and success, recording what it spent as an executor does."""
    await bus.publish_event(js, Started(at=time.time(), id=item.id, attempt=item.attempt), f"{item.id}:s:{item.attempt}")
    await bus.publish_event(js, Succeeded(at=time.time(), id=item.id, attempt=item.attempt, result=result,
                                          evidence=Evidence(cost_usd=usd)), f"{item.id}:ok:{item.attempt}")


async def answered(nc, js, message_id: int, result: dict, sender: int = OWNER, usd: float = 0.0):
    """A chat message from ``sender`` answered with ``result``: the projection once its effects are in."""
    msg = MessageReceived(chat_id=5, message_id=message_id, sender_id=sender, text="…", at=time.time())
    await js.publish(subjects.chat_in(5), encode(msg), headers={bus.MSG_ID: f"tg:5:{message_id}"})
    [respond] = await take_work(js, queue="respond")
    await spend(js, respond, result, usd)
    state = await eventually(nc, lambda s: s.promises[respond.id].children is not None, "the answer's effects")
    return state, state.promises[respond.id]


async def test_a_spent_budget_holds_the_next_plan_saying_what_is_left_until_an_owner_raises_it(nc, js, started):
    leader = await started(config=CONFIG)
    await until(lambda: leader.leader, "the lease")
    await announce(js, queues=("default", "respond", "code"))

    _, first = await answered(nc, js, 1, CODE_PLAN, usd=0.4)
    [fix] = await take_work(js, queue="code")
    assert fix.id == first.children["fix"]
    await spend(js, fix, "fixed", usd=0.7)  # the chat has now spent $1.10 of its $1.00

    state, second = await answered(nc, js, 2, CODE_PLAN, sender=GUEST)
    held = state.promises[second.children["fix"]]
    assert held.state == "awaiting_approval"
    assert held.spec.awaits_approval == "over budget: $0.00 left today (this chat's daily budget of $1.00)"
    assert (held.spec.estimate_usd, held.spec.estimate_runs) == (0.7, 1)
    await leader.drain()
    await never_dispatched(nc, {"fix": held.id})

    # A guest's /budget changes nothing; the owner's is recorded and counted.
    state, guest = await answered(nc, js, 3, {"reply": "…", "commands": [
        {"verb": "budget", "id": 0, "text": "+5 today"}]}, sender=GUEST)
    assert guest.budget == []
    state, owner = await answered(nc, js, 4, {"reply": "…", "commands": [
        {"verb": "budget", "id": 0, "text": "+5 today"}]})
    [raised] = owner.budget
    assert (raised.scope, raised.target, raised.period, raised.add) == ("chat", 5, "day", 5.0)

    state, third = await answered(nc, js, 5, CODE_PLAN, sender=GUEST)
    assert state.promises[third.children["fix"]].spec.awaits_approval is None
    [fix] = await take_work(js, queue="code")
    assert fix.id == third.children["fix"]
    await spend(js, fix, "fixed", usd=4.85)  # $5.95 of $6.00 spent: less is left than code costs lately

    state, fourth = await answered(nc, js, 6, CODE_PLAN, sender=GUEST)
    assert state.promises[fourth.children["fix"]].spec.awaits_approval == (
        "over budget: $0.05 left today (this chat's daily budget of $1.00), the plan is estimated at $2.77")

    state, _ = await answered(nc, js, 7, {"reply": "…", "commands": [{"verb": "budget", "id": 0, "text": "reset"}]})
    resets = [e for _, e in await ValorClient(nc).events() if isinstance(e, BudgetAdjusted) and e.reset]
    assert sorted(e.period for e in resets) == ["day", "month"]
    state, fifth = await answered(nc, js, 8, CODE_PLAN, sender=GUEST)  # counted afresh, raises gone
    assert state.promises[fifth.children["fix"]].spec.awaits_approval == (
        "over budget: $1.00 left today (this chat's daily budget of $1.00), the plan is estimated at $2.77")
