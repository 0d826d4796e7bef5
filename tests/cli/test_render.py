"""The human forms of `show` and `list`, from a projection built without NATS."""

from __future__ import annotations

from promises import story as told
from promises.projection import Projection
from schemas.events import (
    Approved,
    AttemptFailed,
    Created,
    Dispatched,
    InstructionsAdded,
    InstructionsDelivered,
    RetryScheduled,
    Started,
    Succeeded,
)
from valor import render

T0 = 1_700_000_000.0


def story() -> tuple[Projection, list]:
    events = [
        Created(at=T0, id=1, title="parent", task="echo"),
        Created(at=T0, id=2, title="flaky child", task="fail", depends_on=[1], max_attempts=3),
        Dispatched(at=T0 + 0.01, id=1, attempt=1),
        Started(at=T0 + 0.02, id=1, attempt=1, executor="e1"),
        Succeeded(at=T0 + 0.03, id=1, attempt=1, result={"ok": True}, duration=0.01),
        Dispatched(at=T0 + 0.04, id=2, attempt=1),
        Started(at=T0 + 0.05, id=2, attempt=1, executor="e1"),
        AttemptFailed(at=T0 + 0.06, id=2, attempt=1, error="boom"),
        RetryScheduled(at=T0 + 0.07, id=2, next_attempt=2, not_before=T0 + 0.27, delay=0.2),
    ]
    state = Projection()
    for seq, event in enumerate(events, 1):
        state.apply(event, seq)
    return state, events


def test_headline_says_type_title_state_and_attempts():
    state, _ = story()
    assert told.headline(state.promises[1]) == '#1 echo "parent": succeeded on attempt 1'
    assert told.headline(state.promises[2]) == '#2 fail "flaky child": attempt 1 failed, retrying: boom'


def test_show_text_has_fields_a_relative_timeline_and_the_tree():
    state, events = story()
    text = render.show_text(state.promises[2], [e for e in events if e.id == 2], state)
    assert "  error     boom" in text
    assert text.split("timeline\n")[1].split("dependencies\n") == [
        "  +0.000s created, after #1; up to 3 attempts\n"
        "  +0.040s attempt 1 dispatched\n"
        "  +0.050s attempt 1 started on e1\n"
        "  +0.060s attempt 1 failed: boom\n"
        "  +0.070s retry scheduled: attempt 2 in 0.2s\n",
        '  #1 succeeded echo "parent"\n'
        '  └─ #2 retrying fail "flaky child"  ◀',
    ]


def test_list_text_is_a_table_with_ages():
    state, _ = story()
    lines = render.list_text(list(state.promises.values()), now=T0 + 125).splitlines()
    assert lines == [
        "ID  STATE      TYPE  ATT  TITLE        AGE",
        "#1  succeeded  echo  1    parent       2m",
        "#2  retrying   fail  1    flaky child  2m",
    ]


def test_json_form_keeps_the_contract_keys():
    state, events = story()
    shown = render.promise_json(state.promises[1], [2], [e for e in events if e.id == 1])
    assert list(shown)[:6] == ["id", "type", "state", "attempts", "result", "depends_on"]
    assert shown["result"] == {"ok": True} and shown["dependents"] == [2]
    assert [e["type"] for e in shown["events"]] == ["created", "dispatched", "started", "succeeded"]


def test_the_timeline_tells_instructions_added_and_delivered():
    added = InstructionsAdded(at=T0, id=2, text="use pytest", request_id="respond:9:0", by="respond #9")
    delivered = InstructionsDelivered(at=T0, id=2, attempt=1, request_id="respond:9:0")
    assert told.entry(added) == 'instructions added by respond #9: "use pytest"'
    assert told.timeline([added, delivered])[1] == '+0.000s attempt 1 took the instructions "use pytest" into its running session'


def test_show_says_why_a_plan_waits_for_approval_and_who_approved_it():
    events = [Created(at=T0, id=3, title="write", task="code", awaits_approval="code work", approve_by=T0 + 3600),
              Approved(at=T0 + 60, id=3, by="respond #2", reason="approved in chat by Ana")]
    state = Projection()
    state.apply(events[0], 1)
    assert told.headline(state.promises[3]) == '#3 code "write": awaiting approval (code work)'
    text = render.show_text(state.promises[3], events, state)
    assert "  approval  needed (code work); cancelled if not approved within 1h" in text
    assert text.endswith("  +1m00s approved by respond #2: approved in chat by Ana")
