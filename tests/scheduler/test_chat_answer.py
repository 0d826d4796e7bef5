"""A chat's read stays bounded whatever the chat's age (decision 75)."""

import time

import msgspec

from promises.projection import Projection
from schemas.events import Cancelled, Created, Dispatched, Notified, Started, Succeeded
from services.executor.respond import commands, history
from services.executor.respond.view import chat_view
from valor import bus, readmodel
from valor.budget import Budget, Standing
from valor.client import ValorClient
from valor.config import DEFAULT
from valor.readmodel import ChatQuery, ReadIndex, answer, fold_answer

from ..respond.helpers import message

CHAT = 7
OLD_SENT = 555  # Valor's message about #5, long ago


def long_chat(n: int = 3000, open_: int = 60) -> list:
    """``n`` work promises in one chat, all but the newest ``open_`` succeeded; #10 waited on #9."""
    events = []
    for pid in range(1, n + 1):
        events.append(Created(at=float(pid), id=pid, title=f"task number {pid} of a long chat", task="code",
                              chat_id=CHAT, depends_on=[9] if pid == 10 else []))
        if pid <= n - open_:
            events += [Dispatched(at=pid + 0.1, id=pid, attempt=1), Started(at=pid + 0.2, id=pid, attempt=1),
                       Succeeded(at=pid + 0.3, id=pid, attempt=1, result=f"done {pid}")]
    events.append(Notified(id=5, kind="terminal", chat_id=CHAT, telegram_message_id=OLD_SENT))
    events.append(Created(id=n + 1, title="elsewhere", task="code", chat_id=8))
    return list(enumerate(events, 1))


def test_a_long_chats_answer_is_bounded_and_holds_what_the_message_is_about():
    log = long_chat()
    kept = Projection()
    index = ReadIndex(kept)
    for seq, event in log:
        if kept.apply(event, seq):
            index.touch(event)
    whole = [p for p in kept.promises.values() if p.spec.chat_id == CHAT]
    assert len(msgspec.json.encode(whole)) > 1_000_000  # past NATS's max payload, as the issue found
    q = ChatQuery(chat_id=CHAT, about=[10, 8], reply_to=OLD_SENT)
    got = answer(index, q)
    assert len(msgspec.json.encode(got)) < 100_000
    ids = [p.id for p in got.promises]
    assert {5, 8, 9, 10} <= set(ids) and 3001 not in ids
    assert set(range(2941, 3001)) - set(ids) == set(range(2941, 3001 - readmodel.CHAT_OPEN))
    assert (got.open_total, got.work_total, got.counts) == (60, 3000, {"succeeded": 2940, "queued": 60})
    assert msgspec.json.encode(got) == msgspec.json.encode(fold_answer(kept, q))  # the fallback's answer


def test_the_agents_commands_read_a_long_chat_from_its_bounded_view():
    log = long_chat()
    view = chat_view(log, CHAT, query=ChatQuery(chat_id=CHAT, about=[9], reply_to=OLD_SENT))
    assert len(view.promises) < 100
    status = commands.answer(message("/status"), view, DEFAULT).reply
    assert status.startswith("60 open:") and len(status.splitlines()) == 1 + commands.LIST_LIMIT
    assert commands.answer(message("/list"), view, DEFAULT).reply.startswith(
        f"The last {commands.LIST_LIMIT} of 3000:")
    assert "#9" in commands.answer(message("/why 9"), view, DEFAULT).reply
    assert view.about(OLD_SENT).id == 5


async def test_a_promise_the_message_did_not_name_is_read_when_the_agent_asks_for_it():
    view = chat_view(long_chat(), CHAT, query=ChatQuery(chat_id=CHAT))
    assert view.get(7) is None
    await view.load_events([7, 3001])  # 3001 is another chat's
    assert view.get(7).state == "succeeded" and len(view.events[7]) == 4 and view.get(3001) is None


async def test_a_served_chat_read_is_bounded_and_the_fallback_answers_the_same(nc, js, started, monkeypatch):
    monkeypatch.setattr(readmodel, "CHAT_OPEN", 2)
    monkeypatch.setattr(readmodel, "CHAT_RECENT", 3)
    scheduler = await started()
    for pid in range(1, 9):
        await bus.publish_event(js, Created(id=pid, title=f"t{pid}", task="noop", queue="default", chat_id=CHAT),
                                f"c{pid}")
    for pid in range(1, 5):
        await bus.publish_event(js, Cancelled(id=pid, by="test", reason="old"), f"x{pid}")
    await bus.publish_event(js, Notified(id=1, kind="terminal", chat_id=CHAT, telegram_message_id=OLD_SENT), "n1")
    client = ValorClient(nc)
    q = ChatQuery(chat_id=CHAT, about=[2], reply_to=OLD_SENT)
    for _ in range(200):  # the service starts with the scheduler
        if (served := await client.served(q)) is not None:
            break
    assert served is not None and served.by == scheduler.name
    assert [p.id for p in served.promises] == [1, 2, 6, 7, 8]
    assert (served.open_total, served.work_total) == (4, 8)
    want = fold_answer(await client.projection(), q)
    assert msgspec.json.encode(served.promises) == msgspec.json.encode(want.promises)
    view = await history.read_chat(nc, CHAT, about=[2], reply_to=OLD_SENT)
    assert sorted(view.promises) == [1, 2, 6, 7, 8] and view.about(OLD_SENT).id == 1
    await view.load_events([3])  # not in the answer: read by id when asked
    assert view.get(3).state == "cancelled" and [type(e) for e in view.events[3]] == [Created, Cancelled]
    daily = Budget("chat", CHAT, "day", 1.0)
    spent = await history.read_chat(nc, CHAT, spend=True, user_id=1, now=time.time(), budgets=[daily])
    assert spent.spend(0.0, []).standings == [Standing(daily)]  # summed by the scheduler, for the query's budgets
    await scheduler.stop()
    assert await client.served(q) is None
    folded = await history.read_chat(nc, CHAT, about=[2], reply_to=OLD_SENT)
    assert sorted(folded.promises) == [1, 2, 6, 7, 8] and folded.open_total == 4
