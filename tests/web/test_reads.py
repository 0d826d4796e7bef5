"""Where the page's answers come from: the schedulers' served reads, or its own fold when none answers."""

from __future__ import annotations

import ast
import time
from pathlib import Path

from schemas.events import Cancelled, Created
from valor import bus, top
from valor.client import ValorClient
from valor.web.server import Dashboard, follow


def test_with_a_scheduler_the_page_reads_the_service_and_only_new_events(web, stack, history):
    async def fresh():
        live = await follow(stack.nc)
        dashboard = Dashboard(stack.nc, live)
        listed = await dashboard._list({}, 500)
        join = await dashboard._detail(history.join)
        received = live.received
        await live.stop()
        return live, dashboard, listed, join, received

    live, dashboard, listed, join, received = stack.call(fresh())
    # Started from the stream's end: the history already stored was not delivered to it.
    assert not live.fold and received == 0 and live.state.promises == {}
    assert dashboard.client.reads["folded"] == 0 and dashboard.client.reads["served"] >= 3
    states = {p["id"]: p["state"] for p in listed["promises"]}
    assert {pid: states[pid] for pid in history.states()} == history.states()
    assert {"echo", "fail", "sleep"} <= set(listed["types"]) and listed["total"] >= 5
    assert [t["type"] for t in join["timeline"]] == ["created", "dispatched", "started", "succeeded"]
    assert {n["id"] for n in join["graph"]["nodes"]} == {history.a, history.b, history.join}


async def test_with_no_scheduler_the_page_folds_the_log_and_follows_it(nc, js):
    for pid, after in ((1, []), (2, [1])):
        await bus.publish_event(js, Created(id=pid, title=f"p{pid}", task="echo", queue="default",
                                            depends_on=after, chat_id=7), f"c{pid}")
    live = await follow(nc)
    dashboard = Dashboard(nc, live)
    try:
        assert live.fold and live.received == 2
        listed = await dashboard._list({}, 500)
        assert [(p["id"], p["state"]) for p in listed["promises"]] == [(2, "waiting"), (1, "queued")]
        assert listed["types"] == ["echo"] and listed["chats"] == [7] and listed["total"] == 2
        assert (await dashboard._list({"chat": "8"}, 500))["promises"] == []
        detail = await dashboard._detail(2)
        assert [t["type"] for t in detail["timeline"]] == ["created"]
        assert {n["id"] for n in detail["graph"]["nodes"]} == {1, 2}
        seq = listed["seq"]
        await bus.publish_event(js, Cancelled(id=1, by="test", reason="gone"), "x1")
        for _ in range(50):  # wait_for(live.changed()) could start watching after the event it waits for
            if live.changed_since(seq):
                break
            await live.changed(0.1)
        moved = await dashboard._changes(live.changed_since(seq), live.seq)
        assert [(p["id"], p["state"]) for p in moved["promises"]] == [(1, "cancelled")]
        assert dashboard.client.reads == {}  # nothing asked of a service that is not there
    finally:
        await live.stop()


# --- valor top reads the same way ------------------------------------------------------------------------


def frames_of(client, n: int = 2):
    shown: list[str] = []
    return shown, top.watch(client, shown.append, 0.05, n, False, lambda: (time.time(), "12:00:00"))


def test_with_a_scheduler_top_asks_the_service_and_never_replays_the_log(stack, history):
    client = ValorClient(stack.nc, by="top-test")
    shown, watching = frames_of(client)
    stack.call(watching)
    assert len(shown) == 2
    for frame in shown:
        assert "scheduler  " in frame and "recent" in frame and f"#{history.join}" in frame
    assert client.reads["folded"] == 0 and client.reads["served"] >= 4  # counts and rows, each frame


async def test_with_no_scheduler_top_folds_the_log_once(nc, js):
    for pid in (1, 2):
        await bus.publish_event(js, Created(id=pid, title=f"p{pid}", task="echo", queue="default"), f"c{pid}")
    client = ValorClient(nc, by="top-test")
    shown, watching = frames_of(client)
    await watching
    assert "#2" in shown[0] and "#1" in shown[0]
    assert client.reads == {}  # its counts and rows came from its own fold: no replay per frame


def test_nothing_imports_the_cli():
    """The CLI is the top of the import arrows: top, the page and the bench ask the client (no cycle)."""
    root = Path(__file__).resolve().parents[2]
    importers = []
    for path in [*root.glob("valor/**/*.py"), *root.glob("services/**/*.py"), *root.glob("bench/*.py")]:
        if path == root / "valor" / "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "valor.cli" or n.startswith("valor.cli.") for n in names):
                importers.append(str(path.relative_to(root)))
    assert importers == []
