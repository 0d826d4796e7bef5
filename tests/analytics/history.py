"""A known history, produced by the real scheduler and executor on a real NATS.

Outcomes by task type (15 promises):
  echo    e1, e2, chain c1 -> c2 -> c3, 3 children of respond promises: succeeded (8); after_long: cancelled
  sleep   slow (1 s): succeeded; long (30 s): cancelled while running
  fail    flaky: fails once, waits out a 0.3 s backoff, succeeds on attempt 2; broken: fails both of its 2 attempts
The run times are far apart (sleep 1 s > flaky's ~0.3 s > echo and respond, a few ms) so the queries that sort
by a measured time give the same order however loaded the machine is.
  respond chat 9 message 100 (live, asks for 2 children), chat 7 message 5 (caught up, sent a day
          earlier, 1 child): succeeded
DLQ: an undecodable command and an undecodable chat message (CHAT keeps 3 messages, 2 decodable).
"""

from __future__ import annotations

import asyncio
import time

from schemas import subjects
from schemas.commands import NewPromise as T
from schemas.events import MessageReceived, encode
from services.executor.worker import Executor
from services.scheduler.service import Scheduler
from valor import bus
from valor.client import ValorClient

DAY = 86400.0
PROMISES = 15


async def respond_with_children(ctx):
    """The agent, scripted: the message text is how many echo children to promise."""
    n = int(ctx.input["text"])
    return {"reply": f"{n} on it", "promises": [{"name": f"c{i}", "type": "echo", "input": i} for i in range(n)]}


async def until(predicate, timeout: float = 20.0, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("history did not settle")
        await asyncio.sleep(poll)


async def produce(url: str) -> dict:
    """Run the history; returns ids by name and the messages' sent_at."""
    nc = await bus.connect(url, name="history")
    js = nc.jetstream()
    await bus.ensure_streams(js, 1)
    scheduler = Scheduler(nc)
    executor = Executor(nc, ["default", "respond"], slots=4, handlers={"respond": respond_with_children},
                        executor_id="exec-a", ack_wait=5)
    await executor.start()
    await scheduler.start()
    client = ValorClient(nc)
    try:
        ids = await client.submit(
            T(name="e1", type="echo", input="one"),
            T(name="e2", type="echo", input="two"),
            T(name="slow", type="sleep", input={"seconds": 1.0}),
            T(name="flaky", type="fail", input={"times": 1}, retries=2, backoff=0.3),
            T(name="broken", type="fail", input={"times": 5}, retries=1, backoff=0.1),
            T(name="c1", type="echo"),
            T(name="c2", type="echo", after=["c1"]),
            T(name="c3", type="echo", after=["c2"]),
            T(name="long", type="sleep", input={"seconds": 30}),
            T(name="after_long", type="echo", after=["long"]),
        )

        async def long_runs():
            p, _ = await client.promise(ids["long"])
            return p.state == "running"

        await until(long_runs)
        await client.cancel(ids["long"], "no longer needed")
        now = time.time()
        sent = {9: now, 7: now - DAY}
        for chat, message_id, text, caught_up in ((9, 100, "2", False), (7, 5, "1", True)):
            msg = MessageReceived(chat_id=chat, message_id=message_id, sender_id=1, sender_name="ann", text=text,
                                  sent_at=sent[chat], caught_up=caught_up, at=now)
            await js.publish(subjects.chat_in(chat), encode(msg),
                             headers={bus.MSG_ID: subjects.msg_id_for_message(chat, message_id)})
        await js.publish(subjects.chat_in(3), b"\xffnot a message")
        await js.publish(subjects.command("submit"), b"not a command")

        async def settled():
            state = await client.projection()
            done = len(state.promises) == PROMISES and all(p.terminal for p in state.promises.values())
            dlq = (await js.stream_info(subjects.DLQ)).state.messages == 2
            return state if done and dlq else None

        state = await until(settled)
        ids.update({f"respond{p.spec.chat_id}": p.id for p in state.promises.values() if p.spec.task == "respond"})
        return {"ids": ids, "sent_at": sent}
    finally:
        await scheduler.stop()
        await executor.stop(grace=1)
        await nc.close()
