"""A chat's messages take effect in order; chats take turns for slots.

Real NATS, the real scheduler and executors, the real command agent: each
message is published on CHAT as ingest does.
"""

import pytest

from schemas.events import Created, Dispatched, Spawned
from services.executor.respond import respond_handler
from services.executor.worker import Executor
from services.scheduler.service import Scheduler
from valor.client import ValorClient

from .test_end_to_end import CHAT, CONFIG, Chat, valor  # noqa: F401 (a fixture)

OTHER_CHAT = 43


async def test_a_status_sent_right_after_a_do_and_a_plan_sees_their_promises(js, valor):  # noqa: F811
    """Tried on the console: /do, /plan, /status one after the other; /status said nothing was open."""
    chat = Chat(js, valor)
    # Long sleeps: on a loaded machine none may end before /status is answered.
    sent = [await chat.send("/do sleep 60"),
            await chat.send("/plan\nsetup: sleep: 60\nwrite: sleep: 2 [after setup]\nrun: echo: go [after write]"),
            await chat.send("/status")]
    do, plan, status = [await chat.answer(mid) for mid in sent]
    ids = [do.children["sleep"], *plan.children.values()]
    lines = status.result["reply"].splitlines()
    assert lines[0] == "4 open:", lines
    assert [line.split()[0] for line in lines[1:]] == [f"#{i}" for i in ids]
    # Each message was answered only once the one before it had its promises recorded.
    events = await valor.events()
    started = {e.id: seq for seq, e in events if isinstance(e, Dispatched) and e.id in (plan.id, status.id)}
    spawned = {e.id: seq for seq, e in events if isinstance(e, Spawned)}
    assert spawned[do.id] < started[plan.id] and spawned[plan.id] < started[status.id]


@pytest.fixture
async def two_pools(nc):
    """Replies on an executor of their own; background work on two slots."""
    scheduler = Scheduler(nc, config=CONFIG)
    replies = Executor(nc, ["respond"], slots=2, executor_id="turns-respond", ack_wait=5,
                       handlers={"respond": respond_handler(CONFIG, nc, env={})})
    work = Executor(nc, ["default"], slots=2, executor_id="turns-work", ack_wait=5)
    for service in (replies, work, scheduler):
        await service.start()
    yield ValorClient(nc)
    await scheduler.stop()
    for executor in (replies, work):
        await executor.stop(grace=1)


async def test_another_chats_single_task_starts_within_one_slot_turn_of_a_50_step_plan(js, two_pools):
    busy, other = Chat(js, two_pools, CHAT), Chat(js, two_pools, OTHER_CHAT)
    steps = "\n".join(f"step{i}: sleep: 3" for i in range(50))  # parallel steps, two slots: 75 s of work
    plan = (await busy.say("/plan\n" + steps)).children
    await busy.until(lambda s: sum(s.promises[i].state == "running" for i in plan.values()) == 2 or None)
    single = (await other.say("/do echo my turn")).children["echo"]
    await other.until(lambda s: s.promises[single].state == "succeeded" or None, timeout=20)

    events = await two_pools.events()
    created = next(seq for seq, e in events if isinstance(e, Created) and e.id == single)
    dispatched = [(seq, e.id) for seq, e in events if isinstance(e, Dispatched)]
    after = [pid for seq, pid in dispatched if seq > created]
    assert after[0] == single, f"dispatched before it: {after[:after.index(single)]}"
    ran = {pid for seq, pid in dispatched if seq < created} & set(plan.values())
    assert len(plan) - len(ran) >= 40  # the plan still had its backlog: the single task did not just come next
