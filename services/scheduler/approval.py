"""Plans that wait for the user's go (decision 45).  Pure: the projection, ``now`` and the config in.

A plan a chat asked for (the promises of a respond result) is created held
when ``[approval]`` in valor.toml says so (``needs_approval``): its ``created``
events carry why and until when.  Held promises are never ready, so never
dispatched.  ``approve`` records ``approved`` for every held step of the plan;
``reject`` cancels them naming the refusal; ``expire`` is the scheduler's timer
that cancels a plan nobody answered, saying so.  Plans submitted with the CLI
are the operator's own and never wait.
"""

from __future__ import annotations

import math

from promises.projection import Projection, Promise
from promises.states import State
from promises.story import waited
from schemas.commands import CommandReply, NewPromise
from schemas.events import Approved, Cancelled
from schemas.subjects import msg_id_for_event
from valor.config import Approval

from .effects import Effect, Publish


def needs_approval(tasks: list[NewPromise], rules: Approval) -> str | None:
    """Why this plan must wait for approval, or None when it may run at once."""
    reasons = []
    if rules.max_steps and len(tasks) > rules.max_steps:
        reasons.append(f"{len(tasks)} steps, more than {rules.max_steps}")
    gated = sorted({t.type for t in tasks} & set(rules.types))
    if gated:
        reasons.append(f"{' and '.join(gated)} work")
    # An estimated cost joins these once tasks have one (issue 12): "about $4, more than $1".
    return "; ".join(reasons) or None


def hold(tasks: list[NewPromise], rules: Approval, now: float, over_budget: str | None = None) -> dict:
    """The ``created`` fields that hold this plan: none when it need not wait.

    ``over_budget``: why a budget holds it too (decision 49), whatever the rules say.
    """
    reason = "; ".join(r for r in (needs_approval(tasks, rules), over_budget) if r) or None
    if reason is None:
        return {}
    return {"awaits_approval": reason, "approve_by": now + rules.expire_after if rules.expire_after else None}


def plan_of(state: Projection, promise_id: int) -> list[Promise]:
    """The promises approved or refused together with ``promise_id``: its plan's steps.

    A respond promise stands for the plan it spawned; any step for its whole plan
    (the promises created by one request).
    """
    p = state.promises.get(promise_id)
    if p is None:
        return []
    if p.spec.task == "respond" and p.children:
        ids = list(p.children.values())
    elif p.spec.request_id is not None:
        ids = list(state.by_request.get(p.spec.request_id, {}).values())
    else:
        ids = [p.id]
    return [state.promises[i] for i in sorted(ids) if i in state.promises]


def _held(state: Projection, promise_id: int, chat_id: int | None) -> tuple[list[Promise], str | None]:
    """The held steps of the plan ``promise_id`` names, or why there are none."""
    p = state.promises.get(promise_id)
    if p is None or (chat_id is not None and p.spec.chat_id != chat_id):  # a chat sees only its own (decision 19)
        return [], f"no promise #{promise_id}"
    held = [s for s in plan_of(state, promise_id) if s.status == State.AWAITING]
    if not held:
        return [], f"#{promise_id} is not awaiting approval (it is {p.state})"
    return held, None


def _ids(steps: list[Promise]) -> dict[str, int]:
    return {(s.spec.name or str(s.id)): s.id for s in steps}


def approve(state: Projection, promise_id: int, now: float, by: str = "cli", reason: str = "",
            chat_id: int | None = None) -> tuple[list[Effect], CommandReply]:
    """``approved`` for every held step of the plan; ``chat_id``: only a plan of that chat."""
    held, error = _held(state, promise_id, chat_id)
    if error:
        return [], CommandReply(ok=False, error=error)
    effects: list[Effect] = [Publish(Approved(at=now, id=s.id, by=by, reason=reason), msg_id_for_event(s.id, "approved"))
                             for s in held]
    return effects, CommandReply(ok=True, ids=_ids(held))


def reject(state: Projection, promise_id: int, now: float, by: str = "cli", reason: str = "",
           chat_id: int | None = None) -> tuple[list[Effect], CommandReply]:
    """Every held step of the plan ends cancelled, naming the refusal."""
    held, error = _held(state, promise_id, chat_id)
    if error:
        return [], CommandReply(ok=False, error=error)
    why = reason or f"plan rejected by {by}"
    effects: list[Effect] = [Publish(Cancelled(at=now, id=s.id, reason=why, by=by), msg_id_for_event(s.id, "cancelled"))
                             for s in held]
    return effects, CommandReply(ok=True, ids=_ids(held))


def expired_reason(p: Promise) -> str:
    return f"not approved within {waited((p.spec.approve_by or p.spec.at) - p.spec.at)}; nothing of the plan ran"


def expire(state: Projection, now: float, ended: set[int]) -> list[Effect]:
    """The scheduler's timer: held promises whose time ran out end cancelled, saying so."""
    effects: list[Effect] = []
    for _, pid in state.awaiting.irange(maximum=(now, math.inf)):
        p = state.promises[pid]
        if p.status != State.AWAITING or pid in ended:
            continue
        ended.add(pid)
        effects.append(Publish(Cancelled(at=now, id=pid, reason=expired_reason(p), by="scheduler"),
                               msg_id_for_event(pid, "cancelled")))
    return effects


def next_expiry(state: Projection, now: float) -> float | None:
    first = next(iter(state.awaiting.irange(minimum=(now, math.inf))), None)
    return first[0] if first is not None else None
