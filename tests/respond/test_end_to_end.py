"""Chat messages in, promises run: real NATS, the real scheduler and executor, the command agent.

Each message is published on CHAT as ingest does; its respond promise runs the
respond handler; the replies checked are the ones the respond promises
recorded (their ``succeeded`` result).
"""

import asyncio
import time

import pytest

from schemas import subjects
from schemas.commands import asks_for_anything
from schemas.events import MessageReceived, Started, Succeeded, encode
from services.executor.respond import respond_handler
from services.executor.worker import Executor
from services.scheduler.service import Scheduler
from valor import bus
from valor.client import ValorClient
from valor.config import parse

CHAT = 42
# ``review`` stands in for ``code_review`` (real Claude Code runs are tested elsewhere):
# an echo that takes a moment, so running in parallel shows in the log.
CONFIG = parse('[types.review]\nhandler = "echo"\n')


async def review(ctx):
    await asyncio.sleep(0.5)
    return {"input": ctx.input, "deps": ctx.deps}


@pytest.fixture
async def valor(nc):
    scheduler = Scheduler(nc, config=CONFIG)
    executor = Executor(nc, ["default", "respond"], slots=6, executor_id="respond-e2e", ack_wait=5,
                        handlers={"respond": respond_handler(CONFIG, nc, env={}), "review": review})
    await executor.start()
    await scheduler.start()
    yield ValorClient(nc)
    await scheduler.stop()
    await executor.stop(grace=1)


class Chat:
    def __init__(self, js, client: ValorClient, chat_id: int = CHAT):
        self.js, self.client, self.chat_id, self.next_id = js, client, chat_id, 1

    async def say(self, text: str):
        """Send a message; return its respond promise once it answered (and its plan exists)."""
        return await self.answer(await self.send(text))

    async def send(self, text: str) -> int:
        """Send a message as ingest does; return its message id."""
        mid, self.next_id = self.next_id, self.next_id + 1
        msg = MessageReceived(chat_id=self.chat_id, message_id=mid, sender_id=1, sender_name="Ana", text=text,
                              at=time.time())
        await self.js.publish(subjects.chat_in(self.chat_id), encode(msg),
                              headers={bus.MSG_ID: f"tg:{self.chat_id}:{mid}"})
        return mid

    async def answer(self, mid: int, timeout: float = 15.0):
        """The respond promise of message ``mid`` once it answered (and what it asked for exists)."""
        def answered(state):
            pid = state.by_message.get((self.chat_id, mid))
            p = state.promises.get(pid) if pid else None
            if p is None or p.state != "succeeded":
                return None
            return p if not asks_for_anything(p.result) or p.children is not None else None

        return await self.until(answered, timeout)

    async def until(self, found, timeout: float = 15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = await self.client.projection()
            if (value := found(state)) is not None:
                return value
            await asyncio.sleep(0.1)
        raise TimeoutError("the log never showed it")

    async def state(self, pid: int):
        p, _ = await self.client.promise(pid)
        return p


@pytest.fixture
def chat(js, valor):
    return Chat(js, valor)


async def test_plan_a_chain_cancel_its_running_second_step_and_ask_why(chat, valor):
    planned = await chat.say('/plan\none: sleep: {"seconds": 0.2}\ntwo: sleep: {"seconds": 30} [after one]\n'
                             "three: echo: collect [after two]")
    assert planned.result["reply"] == "Planned 3 tasks: one; two (after one); three (after two)"
    ids = planned.children
    one, two, three = ids["one"], ids["two"], ids["three"]
    await chat.until(lambda s: s.promises[two].state == "running" or None)

    t0 = time.monotonic()
    cancel = await chat.say(f"/cancel #{two} no longer needed")
    assert cancel.result["reply"] == f'Cancelling #{two} sleep "two". #{three} will be cancelled with it.'
    assert await valor.wait([one, two, three], timeout=10) == {
        one: "succeeded", two: "cancelled", three: "cancelled"}
    assert time.monotonic() - t0 < 10
    step2, step3 = await chat.state(two), await chat.state(three)
    assert (step2.error, step2.cancelled_by) == ("no longer needed", f"respond #{cancel.id}")
    assert (step3.error, step3.cause_id) == (f"dependency #{two} was cancelled: no longer needed", two)

    why = (await chat.say(f"/why {two}")).result["reply"].splitlines()
    assert why[0] == f'#{two} sleep "two": cancelled after 1 attempt: no longer needed'
    assert why[1].endswith(f"created by #{planned.id} as step 'two', after #{one}")
    assert why[-1].endswith(f"cancelled by respond #{cancel.id}: no longer needed")
    why3 = (await chat.say(f"/why #{three}")).result["reply"].splitlines()
    assert why3[0] == (f'#{three} echo "three": cancelled before it started: '
                       f"dependency #{two} was cancelled: no longer needed")
    assert why3[-1].endswith(f"cancelled by the scheduler (because #{two} ended): "
                             f"dependency #{two} was cancelled: no longer needed")

    listed = (await chat.say("/list")).result["reply"]
    assert listed.splitlines() == [f'#{one} succeeded sleep "one"', f'#{two} cancelled sleep "two"',
                                   f'#{three} cancelled echo "three"']
    assert (await chat.say("/status")).result["reply"] == "Nothing is open in this chat. 3 finished; /list shows them."


async def test_three_parallel_reviews_and_a_summary_that_receives_all_three(chat, valor):
    planned = await chat.say("/plan\n"
                             "auth: review: review auth.py for security issues\n"
                             "api: review: review api.py for security issues\n"
                             "db: review: review database.py for security issues\n"
                             "summary: echo: summarise the three reviews [after auth, api, db]")
    ids = planned.children
    reviews = [ids["auth"], ids["api"], ids["db"]]
    assert await valor.wait(list(ids.values()), timeout=15) == {i: "succeeded" for i in ids.values()}
    events = await valor.events()
    started = [seq for seq, e in events if isinstance(e, Started) and e.id in reviews]
    finished = [seq for seq, e in events if isinstance(e, Succeeded) and e.id in reviews]
    assert len(started) == 3 and max(started) < min(finished)  # all three ran at once
    state = await valor.projection()
    summary = state.promises[ids["summary"]]
    assert summary.result["deps"] == {str(i): state.promises[i].result for i in reviews}
    assert state.promises[ids["api"]].result["input"] == "review api.py for security issues"


async def test_a_chain_whose_steps_receive_their_predecessors_results(chat, valor):
    planned = await chat.say("/plan\nsetup: echo: set up the test environment\n"
                             "write: echo: write unit tests [after setup]\nrun: echo: run them [after write]")
    ids = planned.children
    assert await valor.wait(list(ids.values()), timeout=15) == {i: "succeeded" for i in ids.values()}
    state = await valor.projection()
    setup, write, run = (state.promises[ids[n]] for n in ("setup", "write", "run"))
    assert setup.result == {"input": "set up the test environment", "deps": {}}
    assert write.result == {"input": "write unit tests", "deps": {str(setup.id): setup.result}}
    assert run.result == {"input": "run them", "deps": {str(write.id): write.result}}
    assert [p.spec.parent_id for p in (setup, write, run)] == [planned.id] * 3


async def test_do_runs_now_and_later_waits_for_its_delay(chat, valor):
    now = await chat.say("/do echo hello")
    later = await chat.say("/later 1s echo ping")
    assert now.result["reply"] == "Promised an echo task: hello"
    [now_id], [later_id] = now.children.values(), later.children.values()
    assert await valor.wait([now_id, later_id], timeout=10) == {now_id: "succeeded", later_id: "succeeded"}
    state = await valor.projection()
    assert state.promises[now_id].result == {"input": "hello", "deps": {}}
    p = state.promises[later_id]
    assert p.spec.not_before == pytest.approx(p.spec.at + 1.0) and p.started_at >= p.spec.not_before
