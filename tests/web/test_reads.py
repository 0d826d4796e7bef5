"""Where the page's answers come from: the schedulers' served reads, or its own fold when none answers."""

from __future__ import annotations

from schemas.events import Cancelled, Created
from valor import bus
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
