"""The read model the schedulers serve (decision 48): equal to the fold, fresh, and a fallback without them."""

import asyncio
import time

import msgspec
import pytest

from promises.projection import Projection
from schemas import subjects
from schemas.commands import NewPromise
from schemas.events import (
    BudgetAdjusted,
    Cancelled,
    Created,
    Dispatched,
    Evidence,
    MessageReceived,
    Started,
    Succeeded,
    encode,
)
from services.executor.respond import history
from valor import bus
from valor.budget import Budget, Standing
from valor.client import CommandRefused, ValorClient
from valor.readmodel import (
    ChatQuery,
    PromiseQuery,
    PromisesQuery,
    ReadIndex,
    StatusQuery,
    answer,
    fold_answer,
)

from .test_fold_properties import random_history

STATES = ("awaiting_approval", "waiting", "queued", "running", "retrying", "succeeded", "failed", "cancelled")


def _queries(state: Projection):
    ids = sorted(state.promises)
    yield StatusQuery()
    yield ChatQuery(chat_id=7)
    yield ChatQuery(chat_id=7, spend=True, user_id=1)  # with that user's spend and budget changes in every chat
    yield ChatQuery(chat_id=7, spend=True, now=time.time(), budgets=[Budget("chat", 7, "month", 3.0)])
    yield ChatQuery(chat_id=7, about=ids[:3] + [10_000], reply_to=1)
    for s in (None, *STATES):
        yield PromisesQuery(state=s)
        yield PromisesQuery(state=s, chat_id=7, limit=2)
    yield PromisesQuery(ids=ids[::2] + [10_000])
    for pid in ids:
        yield PromiseQuery(id=pid)


def _wire(a):
    return msgspec.json.encode(a)


@pytest.mark.parametrize("seed", range(40))
def test_an_index_kept_event_by_event_answers_what_a_fold_of_the_whole_log_answers(seed):
    kept = Projection()
    index = ReadIndex(kept)
    for seq, event in enumerate(random_history(seed), 1):
        if kept.apply(event, seq):
            index.touch(event)
    folded = Projection()
    for seq, event in enumerate(random_history(seed), 1):
        folded.apply(event, seq)
    assert kept.promises, "the history created promises"
    for q in _queries(folded):
        assert _wire(answer(index, q)) == _wire(fold_answer(folded, q)), q
    assert answer(index, StatusQuery()).counts == dict(folded.counts())


def test_a_chat_read_for_a_user_sums_their_spend_and_budgets_in_every_chat():
    events = []
    for pid, chat, sender, usd in ((1, 7, 1, 0.25), (2, 8, 1, 0.5), (3, 8, 2, 4.0)):
        events += [Created(id=pid, title="m", task="respond", chat_id=chat, input={"sender_id": sender}),
                   Dispatched(id=pid, attempt=1), Started(id=pid, attempt=1),
                   Succeeded(at=9.0, id=pid, attempt=1, evidence=Evidence(cost_usd=usd))]
    raised = BudgetAdjusted(at=9.5, id=3, scope="user", target=1, add=5.0, request_id="budget:3:0:day")
    state = Projection()
    for seq, event in enumerate([*events, raised, BudgetAdjusted(at=9.5, id=3, scope="chat", target=8, add=1.0)], 1):
        state.apply(event, seq)
    mine, chats = Budget("user", 1, "day", 2.0), Budget("chat", 7, "day", 1.0)
    served = fold_answer(state, ChatQuery(chat_id=7, spend=True, user_id=1, now=10.0, budgets=[mine, chats])).spend
    assert (served.today.usd, served.month.usd, served.by_type, served.top) == (0.25, 0.25, {"respond": 0.25},
                                                                                  [(1, 0.25)])
    assert (served.user_today, served.user_month, served.user_chats) == (0.75, 0.75, 2)
    assert served.standings == [Standing(mine, added=5.0, spent=0.75), Standing(chats, spent=0.25)]
    assert fold_answer(state, ChatQuery(chat_id=7)).spend is None


# --- served by a running scheduler -----------------------------------------------------------


async def _served(client: ValorClient, query):
    """The served answer, once the scheduler's service is up (it starts with the scheduler)."""
    for _ in range(200):
        if (a := await client.served(query)) is not None:
            return a
        await asyncio.sleep(0.02)
    raise AssertionError("no scheduler answered")


async def test_the_served_reads_equal_a_replay_of_the_log(nc, started):
    scheduler = await started()
    client = ValorClient(nc)
    ids = await client.submit(NewPromise(name="a", title="a"), NewPromise(name="b", title="b", after=["a"]),
                              NewPromise(name="c", title="c", type="echo", delay=3600))
    await client.cancel(ids["a"], "not needed")
    await _served(client, StatusQuery())
    replayed = await client.projection()
    for q in (*_queries(replayed), PromisesQuery(type="echo"), PromisesQuery(state="cancelled")):
        served = await client.served(q)
        assert served is not None and served.by == scheduler.name
        want = fold_answer(replayed, q)
        assert (served.promises, served.dependents, served.counts, served.spend) == \
            (want.promises, want.dependents, want.counts, want.spend)
    assert [p.id for p in await client.promises(state="cancelled")] == [ids["a"], ids["b"]]
    assert client.reads == {"served": 1}


async def test_a_read_reflects_an_event_stored_just_before_it(nc, js, started):
    await started()
    client = ValorClient(nc)
    pid = (await client.submit(NewPromise(title="long", delay=3600)))["0"]
    await _served(client, StatusQuery())
    for n in range(5):  # stored by someone else (the scheduler did not write it), then read at once
        new = pid + 100 + n
        await bus.publish_event(js, Created(id=new, title=f"direct {n}", task="noop", queue="default"), f"c{new}")
        assert [p.id for p in (await client.read(PromiseQuery(id=new))).promises] == [new]
    await bus.publish_event(js, Cancelled(id=pid, by="test", reason="now"), f"x{pid}")
    p, events = await client.promise(pid)
    assert p.state == "cancelled" and type(events[-1]) is Cancelled
    assert client.reads["folded"] == 0


async def test_a_standby_answers_too_and_both_are_listed_as_one_service(nc, started):
    a, b = await started(), await started()
    client = ValorClient(nc)
    await client.submit(NewPromise(title="x"))
    answered = set()
    for _ in range(100):
        if (got := await client.served(StatusQuery())) is not None:
            answered.add(got.by)
        if answered == {a.name, b.name}:
            break
    assert answered == {a.name, b.name}
    pings = await nc.request("$SRV.INFO.valor-reads", b"", timeout=2)
    assert msgspec.json.decode(pings.data)["name"] == "valor-reads"


async def test_with_no_scheduler_the_client_folds_the_log_itself(nc, started):
    scheduler = await started()
    client = ValorClient(nc)
    ids = await client.submit(NewPromise(name="a", title="a"), NewPromise(name="b", title="b", after=["a"]))
    await scheduler.stop()
    assert await client.served(StatusQuery()) is None
    p, events = await client.promise(ids["b"])
    assert p.state == "waiting" and len(events) == 1
    assert [q.id for q in await client.promises(state="queued")] == [ids["a"]]
    assert client.reads == {"folded": 2}


def _count_reads(nc):
    """Every PromisesQuery's ids, as the schedulers are asked them; and an event set at each."""
    asked: list[list[int]] = []
    arrived = asyncio.Event()

    async def on_request(msg) -> None:
        asked.append(msgspec.json.decode(msg.data, type=PromisesQuery).ids)
        arrived.set()

    return asked, arrived, nc.subscribe("valor.read.promises", cb=on_request)


@pytest.mark.parametrize("n", [3, 40])  # a filter per id; the three wildcards past PER_ID_FILTERS
async def test_an_ending_stored_just_after_the_waiters_read_wakes_it_without_a_recheck(nc, js, started, n):
    await started()
    client = ValorClient(nc)
    ids = list((await client.submit(*(NewPromise(name=f"t{i}", title=f"t{i}") for i in range(n)))).values())
    outsider = (await client.submit(NewPromise(title="not waited for")))["0"]
    asked, _, counting = _count_reads(nc)
    sub = await counting
    read = client.promises
    first = True

    async def stale_read(**kw):
        """The read is answered, then every promise ends before the waiter looks at the answer."""
        nonlocal first
        found = await read(**kw)
        if first:
            first = False
            for pid in [outsider, *ids]:
                await bus.publish_event(js, Cancelled(id=pid, by="test", reason="done"), f"x{pid}")
        return found

    client.promises = stale_read
    # A recheck (60 s) would come after the timeout: only the endings delivered can end this wait.
    states = await client.wait(ids, timeout=20) if n > 3 else (await client.follow(ids, 20, recheck=60))[0]
    await nc.flush()
    await sub.unsubscribe()
    assert {pid: getattr(p, "state", p) for pid, p in states.items()} == {pid: "cancelled" for pid in ids}
    assert asked[0] == sorted(ids)
    confirming = [pid for ask in asked[1:] for pid in ask]
    assert sorted(confirming) == sorted(ids)  # each ending confirmed once; never the outsider


async def test_a_waiter_reads_once_then_again_only_when_an_ending_arrives(nc, started):
    await started()
    client = ValorClient(nc)
    pid = (await client.submit(NewPromise(title="queued, no executor")))["0"]
    asked, arrived, counting = _count_reads(nc)
    sub = await counting
    waiting = asyncio.create_task(client.follow([pid], 20, recheck=60))
    await asyncio.wait_for(arrived.wait(), 10)
    assert asked == [[pid]] and not waiting.done()
    await client.cancel(pid, "enough")
    found, timed_out = await asyncio.wait_for(waiting, 10)
    await sub.unsubscribe()
    assert not timed_out and found[pid].state == "cancelled" and found[pid].error == "enough"
    assert asked == [[pid], [pid]]


async def test_the_slow_recheck_finds_an_ending_the_subscription_lost(nc, started):
    await started()
    client = ValorClient(nc)
    pid = (await client.submit(NewPromise(title="queued, no executor")))["0"]
    asked, arrived, counting = _count_reads(nc)
    sub = await counting

    async def deaf(ids, cb):
        return await nc.subscribe("nothing.ever")

    client._endings = deaf
    waiting = asyncio.create_task(client.follow([pid], 20, recheck=0.2))
    await asyncio.wait_for(arrived.wait(), 10)
    await client.cancel(pid, "enough")
    found, timed_out = await asyncio.wait_for(waiting, 10)
    await sub.unsubscribe()
    assert not timed_out and found[pid].state == "cancelled"
    assert all(ask == [pid] for ask in asked)


async def test_a_wait_past_its_timeout_names_what_is_still_open(nc, started):
    await started()
    client = ValorClient(nc)
    pid = (await client.submit(NewPromise(title="queued, no executor")))["0"]
    asked, _, counting = _count_reads(nc)
    sub = await counting
    with pytest.raises(TimeoutError, match=f"still open: #{pid}"):
        await client.wait([pid], timeout=0.3)
    await nc.flush()
    await sub.unsubscribe()
    assert asked == [[pid], [pid]]  # the first read and a last one at the deadline, nothing between


async def test_waiting_for_an_unknown_promise_is_refused(nc, started):
    await started()
    with pytest.raises(CommandRefused, match="no promise #404"):
        await ValorClient(nc).wait([404], timeout=5)


# --- a chat's last messages ----------------------------------------------------------------


async def test_the_last_messages_of_a_chat_are_read_back_from_its_end_not_replayed(nc, js, monkeypatch):
    await bus.ensure_streams(js)
    for i in range(1, 1201):  # two chats interleaved: 600 messages each
        chat = 1 if i % 2 else 2
        await js.publish(subjects.chat_in(chat),
                         encode(MessageReceived(chat_id=chat, message_id=i, text=f"m{i}", at=time.time())))
    delivered = []
    read_from = history._read_from

    async def counted(js_, subject, start):
        got = await read_from(js_, subject, start)
        delivered.append(len(got))
        return got

    monkeypatch.setattr(history, "_read_from", counted)
    got = await history.read_messages(nc, 1, 5, before=1199)
    assert [m.message_id for m in got] == [1189, 1191, 1193, 1195, 1197]
    assert sum(delivered) < 200  # of the chat's 600
    delivered.clear()
    assert [m.message_id for m in await history.read_messages(nc, 2, 3)] == [1196, 1198, 1200]
    assert [m.message_id for m in await history.read_messages(nc, 2, 700)][:2] == [2, 4]  # fewer than asked
    assert await history.read_messages(nc, 3, 5) == []
