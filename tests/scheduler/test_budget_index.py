"""The budget check reads the projection's spend indexes (decision 79): what they give equals the walk of
every promise they replace, live, after a snapshot and fed the tail.  Plain values, no cluster.

The histories are built to reach what could make the two differ: a step whose parent (the charge's origin)
is created after it spent, an edit that changes a respond promise's sender after its steps spent, spend on
a promise without a chat or sender, budget changes of several scopes, charges either side of a day's and a
month's start.
"""

import datetime
import math

import msgspec
from hypothesis import example, given, settings
from hypothesis import strategies as st

from promises.projection import Projection
from schemas.events import (
    AttemptFailed,
    AttemptStopped,
    BudgetAdjusted,
    Created,
    Dispatched,
    Evidence,
    InputEdited,
    Succeeded,
)
from services.scheduler import snapshot
from valor import budget, spend
from valor.config import parse

from .test_snapshot import CREATED, fold, through_the_log

# A month's start: charges and changes fall either side of it and of the days around it.
MONTH = datetime.datetime(2025, 4, 1, tzinfo=datetime.UTC).timestamp()
DAY = 86_400.0
TIMES = st.floats(MONTH - 2 * DAY, MONTH + 2 * DAY, allow_nan=False)
IDS = st.integers(1, 3)  # few promises, so steps, parents and edits meet
CHATS = st.sampled_from([None, 7, 8])
USERS = st.sampled_from([None, 11, 12])
INPUTS = st.sampled_from([{"sender_id": 11}, {"sender_id": 12}, {"sender_id": 11}, {"sender_id": 12}, None, "text",
                          {"sender_id": 0}, {"sender_id": "11"}])
COST = st.none() | st.floats(0, 3, allow_nan=False) | st.sampled_from([0.1, 0.2, 0.3])
CONFIG = parse("[budgets]\nchat_daily = 1.0\nchat_monthly = 4.0\nuser_daily = 0.7\nuser_monthly = 3.0\n")

EVIDENCE = st.builds(Evidence, cost_usd=COST)
CREATED_EVENTS = st.builds(Created, id=IDS, title=st.just("t"), task=st.sampled_from(["respond", "respond", "code"]),
                          input=INPUTS, chat_id=CHATS, parent_id=st.none() | IDS, at=TIMES)
# Groups of events, so most spend fits: an attempt that ends with its spend, or a stopped attempt's.
GROUPS = st.one_of(
    st.lists(CREATED_EVENTS, min_size=1, max_size=1),
    st.tuples(IDS, TIMES, EVIDENCE, st.sampled_from([Succeeded, AttemptFailed])).map(
        lambda t: [Dispatched(id=t[0], attempt=1, at=t[1]), t[3](id=t[0], attempt=1, at=t[1], evidence=t[2])]),
    st.lists(st.builds(AttemptStopped, id=IDS, attempt=st.sampled_from([0, 1]), at=TIMES, evidence=EVIDENCE),
             min_size=1, max_size=1),
    st.lists(st.builds(InputEdited, id=IDS, message_id=st.just(1), applied=st.just(True), input=INPUTS, at=TIMES),
             min_size=1, max_size=1),
    st.lists(st.builds(BudgetAdjusted, id=IDS, scope=st.sampled_from(["chat", "user"]),
                       target=st.sampled_from([7, 8, 11, 12]), period=st.sampled_from(["day", "month"]),
                       add=st.floats(0, 2, allow_nan=False), reset=st.booleans(),
                       request_id=st.sampled_from(["a", "b", "c"]), at=TIMES), min_size=1, max_size=1),
)
# A promise or two up front, so most spend lands; a parent may still come after its steps.
HISTORIES = st.tuples(st.lists(CREATED_EVENTS, min_size=1, max_size=2), st.lists(GROUPS, max_size=25)).map(
    lambda pair: pair[0] + [e for group in pair[1] for e in group])


def scanned(state: Projection, chat_id, user_id, since: float, until: float):
    """What the check read before the indexes: every charge and change, kept to the chat's and the user's."""
    everything = state.promises.values()
    charges = [c for c in spend.charges(everything) if since <= c.at <= until
               and ((chat_id is not None and c.chat_id == chat_id) or (user_id is not None and c.user_id == user_id))]
    changes = [a for a in budget.adjustments(everything)
               if (a.scope, a.target) in {("chat", chat_id), ("user", user_id)}]
    return charges, changes


def disagreements(state: Projection, now: float) -> list:
    """Each (chat, user) whose indexed charges or changes differ from the scan's (over all time and over the
    month the check reads at ``now``), or whose check at ``now`` does."""
    out = []
    for chat_id in (None, 7, 8):
        for user_id in (None, 11, 12):
            for since, until in ((-math.inf, math.inf), (spend.month_start(now), now)):
                charges = spend.charges_of(state, chat_id, user_id, since, until)
                want = scanned(state, chat_id, user_id, since, until)[0]
                key = lambda c: (c.promise_id, c.at, c.attempt)  # noqa: E731
                if sorted(charges, key=key) != sorted(want, key=key):
                    out.append(("charges", chat_id, user_id, charges, want))
            changes = budget.adjustments_of(state, chat_id, user_id)
            want_changes = scanned(state, chat_id, user_id, 0.0, 0.0)[1]
            if sorted(map(msgspec.json.encode, changes)) != sorted(map(msgspec.json.encode, want_changes)):
                out.append(("changes", chat_id, user_id, changes, want_changes))
            everything = state.promises.values()
            for estimate in (None, 0.25):
                got = budget.check(CONFIG, chat_id, user_id, charges, changes, now, estimate)
                want = budget.check(CONFIG, chat_id, user_id, spend.charges(everything),
                                    budget.adjustments(everything), now, estimate)
                if got != want:
                    out.append(("check", chat_id, user_id, got, want))
    return out


def index(state: Projection):
    return (state.spend_by_chat, state.spend_by_user,
            state.spend_by_origin, state.budget_changes)


def restored(state: Projection) -> Projection:
    return snapshot.restore(snapshot.encode(state, CREATED, taken_at=1.0))[1]


# A respond promise's step spends before the edit that changes who sent the respond promise's message.
EDITED_AFTER_ITS_STEP_SPENT = [
    Created(id=1, title="t", task="respond", input={"sender_id": 11}, chat_id=7, at=MONTH + 10),
    Created(id=2, title="t", task="code", chat_id=7, parent_id=1, at=MONTH + 20),
    Dispatched(id=2, attempt=1, at=MONTH + 30),
    Succeeded(id=2, attempt=1, evidence=Evidence(cost_usd=0.9), at=MONTH + 40),
    InputEdited(id=1, message_id=1, applied=True, input={"sender_id": 12}, at=MONTH + 50),
]
# A step spends before its parent, the charge's origin, is created: its charges become that sender's then.
PARENT_AFTER_ITS_STEP = [
    Created(id=2, title="t", task="code", chat_id=8, parent_id=1, at=MONTH + 10),
    AttemptStopped(id=2, attempt=0, evidence=Evidence(cost_usd=0.5), at=MONTH + 20),
    Created(id=1, title="t", task="respond", input={"sender_id": 11}, chat_id=7, at=MONTH + 30),
]
# A respond promise's own stopped attempt 0 spends, then an edit names another sender.
EDITED_AFTER_IT_SPENT = [
    Created(id=1, title="t", task="respond", input={"sender_id": 11}, chat_id=7, at=MONTH + 10),
    AttemptStopped(id=1, attempt=0, evidence=Evidence(cost_usd=0.8), at=MONTH + 20),
    InputEdited(id=1, message_id=1, applied=True, input={"sender_id": 12}, at=MONTH + 30),
]


@settings(max_examples=300, deadline=None)
@given(HISTORIES, TIMES, st.integers(0, 100))
@example(EDITED_AFTER_ITS_STEP_SPENT, MONTH + 60, 0)
@example(EDITED_AFTER_ITS_STEP_SPENT, MONTH + 60, 4)
@example(PARENT_AFTER_ITS_STEP, MONTH + 60, 2)
@example(EDITED_AFTER_IT_SPENT, MONTH + 60, 2)
def test_the_indexed_budget_inputs_equal_the_scan_live_and_after_a_snapshot(events, now, cut):
    log = through_the_log(events)
    live = fold(log)
    assert disagreements(live, now) == []
    cut = min(cut, len(log))
    resumed = restored(fold(log[:cut]))
    assert index(resumed) == index(fold(log[:cut]))
    resumed = fold(log[cut:], resumed, start=cut + 1)
    assert index(resumed) == index(live)
    assert disagreements(resumed, now) == []


def test_the_comparison_finds_an_index_that_forgets_an_edit(monkeypatch):
    """The property can fail: an index that leaves charges filed under the sender before an edit
    disagrees with the scan (user 11 keeps $0.90 the scan gives user 12, whose check misses it)."""
    now = MONTH + 60
    assert disagreements(fold(EDITED_AFTER_ITS_STEP_SPENT), now) == []
    monkeypatch.setattr(Projection, "_refile", lambda self, origin, was, user: None)
    found = disagreements(fold(EDITED_AFTER_ITS_STEP_SPENT), now)
    assert {(what, user) for what, _, user, *_ in found} >= {("charges", 11), ("charges", 12), ("check", 12)}
