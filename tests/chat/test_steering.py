"""Steering a promise by replying to Valor's message about it, end to end: Telegram (the fake) and the console
in, the real scheduler, executor and command agent, the notifier out.  (Instructions into Claude Code runs:
tests/claude/test_steering_from_chat.py.)
"""

from __future__ import annotations

import asyncio
import io
import json
import time

import pytest

from schemas.events import Created, Notified
from services.executor.respond import respond_handler
from services.executor.worker import Executor
from services.ingest.console import ConsoleIngest
from services.ingest.service import Ingest
from services.notifier.service import Notifier
from services.notifier.transport import ConsoleTransport, console_out
from services.scheduler.service import Scheduler
from valor import console
from valor.client import ValorClient
from valor.config import parse

from .fake_telegram import FakeTelegram

pytestmark = pytest.mark.timeout(120)

ANA = 501
CONSOLE_CHAT = 5
CONFIG = parse(f"[telegram]\nallow_users = [{ANA}]\nchat_interval = 0.0\nedit_interval = 0.2\n")


@pytest.fixture
async def valor(nc):
    scheduler = Scheduler(nc, config=CONFIG)
    executor = Executor(nc, ["default", "respond"], slots=6, handlers={"respond": respond_handler(CONFIG, nc, env={})},
                        executor_id="steering", fetch_timeout=0.2, heartbeat_interval=0.2)
    await executor.start()
    await scheduler.start()
    yield ValorClient(nc)
    await scheduler.stop()
    await executor.stop(grace=1)


@pytest.fixture
async def telegram(nc, valor):
    world = FakeTelegram()
    world.user(ANA, "ana", "Ana")
    ingest, notifier = Ingest(nc, world.inbound(), CONFIG), Notifier(nc, world.transport(), CONFIG)
    await notifier.start()
    await ingest.start(reconcile_forever=False)
    yield world
    await ingest.stop()
    await notifier.stop()


async def until(client: ValorClient, find, what: str, timeout: float = 30.0):
    """The first value ``find(events)`` returns that is not None, read from the log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = find([e for _, e in await client.events()])
        if found is not None:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"never saw {what}")


def created(task: str, message_id: int, after: int = 0):
    return lambda events: next((e for e in events if isinstance(e, Created) and e.task == task
                                and e.message_id == message_id and e.id > after), None)


def notice(pid: int, kind: str):
    return lambda events: next((e for e in events if isinstance(e, Notified) and e.id == pid and e.kind == kind), None)


def answer_to(world: FakeTelegram, message_id: int) -> str | None:
    """Valor's answer replying to the user's message ``message_id`` (the agent's reply), once sent."""
    return next((s.text for s in world.messages_to(ANA) if s.reply_to == message_id), None)


async def answered(world: FakeTelegram, message_id: int, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while (text := answer_to(world, message_id)) is None:
        assert time.monotonic() < deadline, f"no answer to message {message_id}"
        await asyncio.sleep(0.05)
    return text


async def test_replies_stop_explain_and_retry_the_promise_they_answer(valor, telegram):
    world = telegram
    asked = await world.says(ANA, ANA, "/do sleep 30")
    nap = await until(valor, created("sleep", asked.id), "the sleep task")
    status = await until(valor, notice(nap.id, "status"), "its status message")

    t0 = time.monotonic()
    stop = await world.says(ANA, ANA, "stop", reply_to=status.telegram_message_id)
    assert await valor.wait([nap.id], timeout=10) == {nap.id: "cancelled"}
    assert time.monotonic() - t0 < 10  # not the 30 s it would have slept
    assert await answered(world, stop.id) == f'Cancelling #{nap.id} sleep "30".'

    why = await world.says(ANA, ANA, "why?", reply_to=status.telegram_message_id)
    assert (await answered(world, why.id)).startswith(
        f'#{nap.id} sleep "30": cancelled after 1 attempt: cancelled in chat by Ana')

    ended = await until(valor, notice(nap.id, "terminal"), "its result message")
    again = await world.says(ANA, ANA, "try again", reply_to=ended.telegram_message_id)
    assert await answered(world, again.id) == f'Retrying #{nap.id} sleep "30" as a new promise.'
    state = await valor.projection()
    [copy] = [p for p in state.promises.values() if p.spec.retry_of == nap.id]
    copy_status = await until(valor, notice(copy.id, "status"), "the copy's status message")
    await world.says(ANA, ANA, "❌", reply_to=copy_status.telegram_message_id)
    assert await valor.wait([copy.id], timeout=10) == {copy.id: "cancelled"}

    # A message that replies to nothing is a new request, never a gesture on running work.
    plain = await world.says(ANA, ANA, "stop")
    assert (await answered(world, plain.id)).startswith("No language model is configured")


async def test_the_console_replies_to_valor_s_messages_by_their_names(nc, valor):
    intake = ConsoleIngest(nc, Ingest(nc, None, CONFIG))
    notifier = Notifier(nc, ConsoleTransport(nc), CONFIG)
    screen = console.Screen(out=io.StringIO())
    lines: list[str] = []
    screen.print = lines.append  # what the terminal would show, line by line

    async def show(msg) -> None:
        screen.show(json.loads(msg.data))

    sub = await nc.subscribe(console_out(CONSOLE_CHAT), cb=show)
    await intake.start()
    await notifier.start()
    try:
        await console.send_line(nc, CONSOLE_CHAT, "/do sleep 30", screen)
        nap = await until(valor, created("sleep", 1), "the sleep task")
        status = await until(valor, notice(nap.id, "status"), "its status message")
        await until(valor, lambda _: screen.names.get(status.telegram_message_id), "the status message on screen")
        name = screen.names[status.telegram_message_id]

        await console.send_line(nc, CONSOLE_CHAT, f">{name} stop", screen)
        assert f"you [#2] ↩ {name}: stop" in lines
        assert await valor.wait([nap.id], timeout=10) == {nap.id: "cancelled"}
        await console.send_line(nc, CONSOLE_CHAT, f">{name} why?", screen)
        await until(valor, lambda _: next((line for line in lines if "↩ #3" in line), None), "the answer to why")
        assert f'↩ #3: #{nap.id} sleep "30": cancelled after 1 attempt: cancelled in chat by you' in "\n".join(
            lines)
        await console.send_line(nc, CONSOLE_CHAT, ">v99 stop", screen)
        assert lines[-1] == "(not sent: there is no message v99 to reply to yet)"
    finally:
        await sub.unsubscribe()
        await notifier.stop()
        await intake.stop()
