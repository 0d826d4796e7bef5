"""What the dashboard shows, from hand-written logs: rows, filters and the graph's layout."""

from __future__ import annotations

from promises.projection import Projection
from schemas.events import CommandRun, Created, Dispatched, Evidence, FileChange, Started, Succeeded
from valor.web import views


def fold(*events) -> Projection:
    state = Projection()
    for seq, event in enumerate(events, 1):
        state.apply(event, seq)
    return state


def created(pid: int, *deps: int, task: str = "echo", chat: int | None = None) -> Created:
    return Created(id=pid, title=f"p{pid}", task=task, depends_on=list(deps), chat_id=chat, at=100.0 + pid)


def placed(graph: dict) -> dict[int, tuple[int, int]]:
    return {n["id"]: (n["layer"], n["row"]) for n in graph["nodes"]}


def test_a_diamond_is_laid_out_in_layers_by_depth():
    state = fold(created(1), created(2, 1), created(3, 1), created(4, 2, 3))
    graph = views.graph(state, 4)
    assert placed(graph) == {1: (0, 0), 2: (1, 0), 3: (1, 1), 4: (2, 0)}
    assert sorted((e["from"], e["to"]) for e in graph["edges"]) == [(1, 2), (1, 3), (2, 4), (3, 4)]
    xs = {n["id"]: n["x"] for n in graph["nodes"]}
    assert xs[1] < xs[2] == xs[3] < xs[4]
    assert [n["id"] for n in graph["nodes"] if n["focus"]] == [4]


def test_the_graph_of_a_parent_shows_the_whole_join_it_feeds():
    state = fold(created(1), created(2), created(3, 1, 2), created(4))
    assert placed(views.graph(state, 1)) == {1: (0, 0), 2: (0, 1), 3: (1, 0)}
    assert placed(views.graph(state, 4)) == {4: (0, 0)}  # unrelated promises stay out


def test_children_sit_next_to_their_parents():
    # 1 -> 4 and 2 -> 3: without ordering by the parents' rows the edges would cross.
    state = fold(created(1), created(2), created(3, 2), created(4, 1), created(5, 3, 4))
    rows = placed(views.graph(state, 5))
    assert rows[4] == (1, 0) and rows[3] == (1, 1)


def test_an_unknown_dependency_is_drawn_as_unknown():
    state = fold(created(2, 1))
    nodes = {n["id"]: n for n in views.graph(state, 2)["nodes"]}
    assert nodes[1]["state"] == "unknown" and nodes[1]["layer"] == 0 and nodes[2]["layer"] == 1


def test_a_long_chain_is_cut_at_the_limit_nearest_first():
    state = fold(*[created(i, *([i - 1] if i > 1 else [])) for i in range(1, 3001)])
    graph = views.graph(state, 1500, limit=50)
    ids = {n["id"] for n in graph["nodes"]}
    assert len(ids) == 50 and graph["truncated"] and 1500 in ids and {1475, 1524} <= ids
    full = views.graph(state, 3000, limit=5000)  # 3000 deep: no recursion limit hit
    assert max(n["layer"] for n in full["nodes"]) == 2999


def test_the_list_filters_by_state_type_and_chat_newest_first():
    state = fold(created(1, chat=7), created(2, task="sleep", chat=8), created(3, task="sleep"),
                 Dispatched(id=1, attempt=1), Started(id=1, attempt=1, executor="e1"),
                 Succeeded(id=1, attempt=1, result={"ok": 1}))
    listed = views.promise_list(state, {}, 100, seq=6)
    assert [p["id"] for p in listed["promises"]] == [3, 2, 1]
    assert listed["counts"] == {"succeeded": 1, "queued": 2} and listed["seq"] == 6
    assert listed["types"] == ["echo", "sleep"] and listed["chats"] == [7, 8]

    def ids(**filters: str) -> list[int]:
        return [p["id"] for p in views.promise_list(state, filters, 100, 6)["promises"]]

    assert ids(state="succeeded") == [1]
    assert ids(type="sleep") == [3, 2]
    assert ids(chat="8") == [2]
    assert ids(type="sleep", state="succeeded") == []
    assert ids(state="") == [3, 2, 1]
    assert [p["id"] for p in views.promise_list(state, {}, 2, 6)["promises"]] == [3, 2]


def test_a_detail_carries_the_show_json_fields_timeline_and_graph():
    state = fold(created(1, chat=7), Dispatched(id=1, attempt=1, at=101.5),
                 Started(id=1, attempt=1, executor="e1", at=101.75), Succeeded(id=1, attempt=1, duration=0.25, at=102.0))
    events = [created(1, chat=7), Dispatched(id=1, attempt=1, at=101.5),
              Started(id=1, attempt=1, executor="e1", at=101.75), Succeeded(id=1, attempt=1, duration=0.25, at=102.0)]
    shown = views.detail(state, 1, events)
    assert shown["state"] == "succeeded" and shown["chat_id"] == 7 and shown["executor"] == "e1"
    assert shown["headline"] == '#1 echo "p1": succeeded on attempt 1'
    assert shown["timeline"] == [
        {"type": "created", "at": 101.0, "offset": 0.0, "text": "created"},
        {"type": "dispatched", "at": 101.5, "offset": 0.5, "text": "attempt 1 dispatched"},
        {"type": "started", "at": 101.75, "offset": 0.75, "text": "attempt 1 started on e1"},
        {"type": "succeeded", "at": 102.0, "offset": 1.0, "text": "succeeded on attempt 1 in 0.2s: no result"},
    ]
    assert [e["type"] for e in shown["events"]] == ["created", "dispatched", "started", "succeeded"]
    assert views.detail(state, 2, []) is None


def test_a_detail_shows_the_attempt_s_evidence_in_full():
    proof = Evidence(commands=[CommandRun(command="pytest -q", exit_code=1, check=True, output="1 failed")],
                     files=[FileChange(path="app.py", status="modified", added=2, removed=1)], cost_usd=0.25)
    events = [created(1, task="code"), Dispatched(id=1, attempt=1, at=101.5),
              Started(id=1, attempt=1, executor="e1", at=101.75),
              Succeeded(id=1, attempt=1, duration=0.25, evidence=proof, at=102.0)]
    shown = views.detail(fold(*events), 1, events)
    assert shown["evidence"] == ["$0.2500", "exit 1   pytest -q   [check]", "    | 1 failed",
                                 "files: 1 file changed (+2 −1)", "    modified  app.py (+2 −1)"]
    assert shown["timeline"][-1]["text"] == (
        "succeeded on attempt 1 in 0.2s: no result (1 file changed (+2 −1) · ran `pytest -q`: exit 1 · $0.25)")


DAY = 86400.0
NOW = 1741953600.0  # 2025-03-14 12:00 UTC


def spent(pid: int, usd: float, at: float, chat: int = 7) -> list:
    return [Created(id=pid, title=f"p{pid}", task="code", chat_id=chat, at=at - 10),
            Dispatched(id=pid, attempt=1, at=at - 9), Started(id=pid, attempt=1, executor="e1", at=at - 8),
            Succeeded(id=pid, attempt=1, evidence=Evidence(cost_usd=usd), at=at)]


def test_the_page_shows_spend_per_promise_and_per_day_empty_days_included():
    state = fold(*spent(1, 0.5, NOW - 2 * DAY), *spent(2, 1.25, NOW - 3600), *spent(3, 0.25, NOW - 60, chat=8),
                 *spent(4, 9.0, NOW - 30 * DAY), created(5))
    rows = {p["id"]: p for p in views.promise_list(state, {}, 100, seq=1)["promises"]}
    assert (rows[2]["cost_usd"], rows[5]["cost_usd"]) == (1.25, None)

    shown = views.spend_view(state, {}, NOW, days=3)
    assert [(d["day"], d["usd"], d["attempts"]) for d in shown["by_day"]] == [
        ("2025-03-12", 0.5, 1), ("2025-03-13", 0.0, 0), ("2025-03-14", 1.5, 2)]
    assert shown["total"]["usd"] == 2.0  # the month-old promise is outside the days shown
    assert [(t["id"], t["usd"], t["title"]) for t in shown["top"]] == [(2, 1.25, "p2"), (1, 0.5, "p1"), (3, 0.25, "p3")]
    assert [d["usd"] for d in views.spend_view(state, {"chat": "8"}, NOW, days=3)["by_day"]] == [0.0, 0.0, 0.25]
