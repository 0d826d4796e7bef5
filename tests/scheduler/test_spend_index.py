"""A user's spend is read from the index and equals the scan of every promise it replaced (decision 78)."""

import random
from unittest import mock

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from promises.projection import Projection
from schemas.events import (
    AttemptFailed,
    AttemptStopped,
    BudgetAdjusted,
    Cancelled,
    Created,
    Dispatched,
    Evidence,
    InputEdited,
    Started,
    Succeeded,
)
from services.scheduler import snapshot
from valor import budget, readmodel, spend
from valor.budget import Budget
from valor.readmodel import ChatQuery, ReadIndex, answer, user_spend

NOW = 1_790_000_000.0  # 2026-09-21: a month start lies inside the histories' 40 days
USERS = (1, 2, 3)
CHATS = (7, 8)


def scanned(state: Projection, user_id: int):
    """The scan ``user_spend`` replaced, in its order (by promise id, then log order): the oracle."""
    promises = sorted(state.promises.values(), key=lambda p: p.id)
    charges = [c for c in spend.charges(promises) if c.user_id == user_id]
    adjustments = [a for a in budget.adjustments(promises) if (a.scope, a.target) == ("user", user_id)]
    return charges, adjustments


ids = st.integers(1, 12)
senders = st.one_of(st.none(), st.sampled_from(USERS))
hours = st.integers(0, 40 * 24)
promise = st.fixed_dictionaries({
    "id": ids,
    "task": st.sampled_from(["respond", "respond", "code", "shell"]),
    "chat": st.sampled_from([*CHATS, None]),
    "parent": st.one_of(st.none(), ids),  # any promise, created before or after, or never
    "sender": senders,
    "edited": st.one_of(st.just("no"), senders),  # edited before its first dispatch: another sender, or none
    "end": st.sampled_from(["none", "succeeded", "failed", "stopped"]),
    "usd": st.one_of(st.none(), st.floats(0, 5, allow_nan=False)),
    "hour": hours,
    "budgets": st.lists(st.tuples(st.sampled_from(["user", "chat"]), st.sampled_from([*USERS, *CHATS]),
                                  st.floats(0, 10, allow_nan=False), st.integers(0, 2), hours), max_size=2),
})


def events_of(d: dict) -> list:
    pid, at = d["id"], NOW - d["hour"] * 3600.0

    def said(sender):
        return {"sender_id": sender, "text": "go"} if sender is not None else {"text": "go"}

    out: list = [Created(at=at, id=pid, title="t", task=d["task"], chat_id=d["chat"], parent_id=d["parent"],
                         input=said(d["sender"]))]
    if d["edited"] != "no":
        out.append(InputEdited(at=at, id=pid, message_id=1, applied=True, input=said(d["edited"])))
    evidence = Evidence(cost_usd=d["usd"])
    if d["end"] != "none":
        out += [Dispatched(at=at, id=pid, attempt=1), Started(at=at, id=pid, attempt=1)]
    if d["end"] == "succeeded":
        out.append(Succeeded(at=at + 1, id=pid, attempt=1, evidence=evidence))
    elif d["end"] == "failed":
        out.append(AttemptFailed(at=at + 1, id=pid, attempt=1, error="x", retryable=False, evidence=evidence))
    elif d["end"] == "stopped":
        out += [Cancelled(at=at + 1, id=pid, by="test", reason="no"),
                AttemptStopped(at=at + 2, id=pid, attempt=1, evidence=evidence)]
    for scope, target, add, n, hour in d["budgets"]:
        out.append(BudgetAdjusted(at=NOW - hour * 3600.0, id=pid, scope=scope, target=target, period="month",
                                  add=add, request_id=f"budget:{pid}:{n}:month"))
    return out


def interleaved(runs: list[list], rng: random.Random) -> list:
    """Every promise's events in their order, the promises' interleaved, and some delivered twice."""
    runs = [list(r) for r in runs]
    out = []
    while runs:
        run = rng.choice(runs)
        out.append(run.pop(0))
        if rng.random() < 0.1:
            out.append(out[-1])
        if not run:
            runs.remove(run)
    return out


def kept(events: list, state: Projection | None = None, first_seq: int = 1) -> ReadIndex:
    """The index a scheduler keeps: built on ``state`` (empty, or loaded), then touched event by event."""
    index = ReadIndex(state or Projection())
    for seq, event in enumerate(events, first_seq):
        if index.state.apply(event, seq):
            index.touch(event)
    return index


@settings(max_examples=150, deadline=None)
@given(st.lists(promise, max_size=14), st.randoms(use_true_random=False), st.data())
def test_a_users_spend_from_the_index_equals_the_scan_live_after_a_snapshot_and_rebuilt(plans, rng, data):
    events = interleaved([events_of(d) for d in plans], rng)
    live = kept(events)
    cut = data.draw(st.integers(0, len(events)))
    _, loaded = snapshot.restore(snapshot.encode(kept(events[:cut]).state, "created", 1.0))
    resumed = kept(events[cut:], loaded, first_seq=cut + 1)
    state = live.state
    indexes = {"live": live, "after a snapshot": resumed, "rebuilt": ReadIndex(state)}
    for user in (*USERS, 99):
        want = scanned(state, user)
        for how, index in indexes.items():
            assert user_spend(index, user) == want, (how, user)
    budgets = [Budget("user", 1, "month", 4.0), Budget("chat", 7, "day", 1.0)]
    for user in (1, 2):
        q = ChatQuery(chat_id=7, spend=True, user_id=user, now=NOW, budgets=budgets)
        with mock.patch.object(readmodel, "user_spend", lambda index, u: scanned(index.state, u)):
            want = msgspec.json.encode(answer(live, q))
        assert all(msgspec.json.encode(answer(index, q)) == want for index in indexes.values())


def test_a_users_spend_counts_their_requests_and_steps_in_every_chat_and_nothing_of_others():
    events = [Created(at=NOW, id=1, title="m", task="respond", chat_id=7, input={"sender_id": 1}),
              Created(at=NOW, id=2, title="step", task="code", chat_id=7, parent_id=1),
              Created(at=NOW, id=3, title="m", task="respond", chat_id=8, input={"sender_id": 1}),
              Created(at=NOW, id=4, title="m", task="respond", chat_id=8, input={"sender_id": 2}),
              Created(at=NOW, id=5, title="step", task="code", chat_id=8, parent_id=4),
              Created(at=NOW, id=6, title="m", task="respond", chat_id=7, input={"sender_id": 2}),
              InputEdited(at=NOW, id=6, message_id=1, applied=True, input={"sender_id": 1})]  # now 1's
    for pid in range(1, 7):
        events += [Dispatched(at=NOW, id=pid, attempt=1), Started(at=NOW, id=pid, attempt=1),
                   Succeeded(at=NOW, id=pid, attempt=1, evidence=Evidence(cost_usd=float(pid)))]
    index = kept(events)
    assert [c.promise_id for c in user_spend(index, 1)[0]] == [1, 2, 3, 6]
    assert [c.promise_id for c in user_spend(index, 2)[0]] == [4, 5]
    assert index.by_sender[2] == {4, 6}  # 6 was 2's until the edit: looked at, not counted
