"""`--idempotency-key`: a retried `valor submit` or `valor plan` creates its promises once (decision 66)."""

from __future__ import annotations

import asyncio
import json

from services.scheduler.service import Scheduler
from valor.client import ValorClient


def promises_of(stack, request_id: str) -> list[int]:
    async def read():
        state = await ValorClient(stack.nc).projection()
        return sorted(p.id for p in state.promises.values() if p.spec.request_id == request_id)

    return stack.call(read())


def test_submitting_twice_with_one_key_creates_one_promise_and_prints_its_id_both_times(valor, stack):
    first = valor("submit", "--idempotency-key", "nightly-2026-12-07", "report")
    again = valor("submit", "--idempotency-key", "nightly-2026-12-07", "report")
    assert first.exit_code == 0 and again.exit_code == 0, first.output + again.output
    assert first.stdout == again.stdout
    assert promises_of(stack, "key:nightly-2026-12-07") == [int(first.stdout)]
    other = valor("submit", "--idempotency-key", "nightly-2026-12-08", "report")
    assert int(other.stdout) != int(first.stdout)


def test_a_plan_sent_twice_with_one_key_creates_its_tasks_once(valor, stack):
    plan = json.dumps({"tasks": [{"name": "a", "type": "echo"}, {"name": "b", "type": "echo", "after": ["a"]}]})
    first = valor("plan", "-", "--idempotency-key", "deploy-41", input=plan)
    again = valor("plan", "-", "--idempotency-key", "deploy-41", input=plan)
    assert first.exit_code == 0 and first.stdout == again.stdout, first.output + again.output
    assert len(promises_of(stack, "key:deploy-41")) == 2


def test_the_key_holds_across_a_scheduler_restart(valor, stack):
    first = valor("submit", "--idempotency-key", "across-restart", "once")
    assert first.exit_code == 0, first.output

    async def restart():
        old = stack.scheduler
        await old.stop()
        stack.scheduler = Scheduler(stack.nc, config=old.config, lease_ttl=2.0)
        await stack.scheduler.start()
        while not (stack.scheduler.leader and stack.scheduler._leader_tasks):
            await asyncio.sleep(0.02)

    stack.call(restart())
    again = valor("submit", "--idempotency-key", "across-restart", "once")
    assert again.exit_code == 0 and again.stdout == first.stdout, again.output
    assert promises_of(stack, "key:across-restart") == [int(first.stdout)]


def test_a_key_with_characters_a_request_id_cannot_hold_is_refused_before_anything_is_sent(valor):
    result = valor("submit", "--idempotency-key", "two words", "x")
    assert result.exit_code == 2 and "--idempotency-key" in result.stderr
