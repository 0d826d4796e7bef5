"""Spend totals read from a running scheduler survive its restart, with and without a snapshot (decision 47).

Totals are a fold of the attempts' end events (``succeeded``, ``attempt_failed``,
``attempt_stopped``), so what the served read (decision 48) sums before a
scheduler stops equals what a new scheduler — replaying the whole log or
starting from a snapshot plus the tail — sums after, and what ``valor usage
--json`` folds from the log itself.
"""

import asyncio
import json
import logging
import time

from click.testing import CliRunner

from schemas.commands import NewPromise
from schemas.events import AttemptFailed, AttemptStopped, Evidence, Started, TokenUsage
from services.scheduler.service import Scheduler
from valor import bus, spend
from valor.cli import main
from valor.client import ValorClient
from valor.readmodel import PromisesQuery

from .conftest import gone
from .test_budget_service import CODE_PLAN, OWNER, answered
from .test_budget_service import spend as succeed
from .test_service import announce, take_work
from .test_snapshot_restart import caught_up, logged, until


def ev(usd: float, n: int) -> Evidence:
    return Evidence(cost_usd=usd, tokens=TokenUsage(input=n, output=n // 10, cache_read=n // 2))


async def served_totals(nc, s: Scheduler) -> dict:
    """The totals of every promise as ``s`` serves them (not the client's fallback fold of the log)."""
    answer = await ValorClient(nc).served(PromisesQuery())
    deadline = time.monotonic() + 10
    while answer is None or answer.by != s.name:  # the service starts with the scheduler; a stopped one is gone
        assert time.monotonic() < deadline, f"{s.name} did not answer"
        await asyncio.sleep(0.05)
        answer = await ValorClient(nc).served(PromisesQuery())
    return spend.totals(spend.charges(answer.promises)).as_dict()


async def usage_json(url: str) -> dict:
    """``valor usage --json``: the CLI folds the log itself (click's runner calls asyncio.run, so off this loop)."""
    result = await asyncio.to_thread(CliRunner().invoke, main, ["usage", "--json"],
                                     env={"VALOR_NATS_URL": url})
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


async def test_spend_totals_served_after_a_restart_equal_those_before_with_and_without_a_snapshot(
        nc, js, nats_server, started, caplog):
    caplog.set_level(logging.INFO, logger="valor.scheduler")
    first = await started(snapshot_every=0)
    await until(lambda: first.leader, "the lease")
    await announce(js, queues=("default", "respond", "code"))

    # A chat's plan (the respond promise and its step: user and plan totals), and a CLI submission.
    _, respond = await answered(nc, js, 1, CODE_PLAN, usd=0.4)
    [fix] = await take_work(js, queue="code")
    await bus.publish_event(js, Started(at=time.time(), id=fix.id, attempt=1), f"{fix.id}:s:1")
    await bus.publish_event(js, AttemptFailed(at=time.time(), id=fix.id, attempt=1, error="over its cap",
                                              retryable=False, evidence=ev(0.3, 3000)), f"{fix.id}:f:1")
    ids = await ValorClient(nc).submit(NewPromise(name="done", title="by hand"),
                                       NewPromise(name="stopped", title="stopped by hand"))
    by_hand, stopped = sorted(await take_work(js, n=2), key=lambda item: item.id)
    assert (by_hand.id, stopped.id) == (ids["done"], ids["stopped"])
    await succeed(js, by_hand, "done", usd=1.25)
    await bus.publish_event(js, Started(at=time.time(), id=stopped.id, attempt=1), f"{stopped.id}:s:1")
    await ValorClient(nc).cancel(stopped.id, "not needed")
    for n in range(2):  # an executor's stop recorded twice counts once
        await bus.publish_event(js, AttemptStopped(at=time.time(), id=stopped.id, attempt=1,
                                                   evidence=ev(0.05, 500)), f"{stopped.id}:x:{n}")
    await caught_up(first, js)

    before = await served_totals(nc, first)
    assert before["total"]["usd"] == 2.0 and before["total"]["attempts"] == 4
    assert before["total"]["input"] == 3500 and before["total"]["cache_read"] == 1750
    assert {k: v["usd"] for k, v in before["by_type"].items()} == {"code": 0.3, "noop": 1.3, "respond": 0.4}
    assert {k: v["usd"] for k, v in before["by_user"].items()} == {str(OWNER): 0.7, "None": 1.3}
    assert {k: v["usd"] for k, v in before["by_plan"].items()} == {str(respond.id): 0.7, "None": 1.3}
    assert await usage_json(nats_server.url) == before

    # Without a snapshot: the new scheduler replays the whole log.
    await gone(first)
    second = await started(snapshot_every=0)
    await caught_up(second, js)
    assert not logged(caplog, "projection snapshot loaded")
    assert await served_totals(nc, second) == before

    # From a snapshot plus a tail: one more charge after the snapshot, and a repeated stop that must not count.
    await second.snapshots.store(second.state)
    await gone(second)
    await bus.publish_event(js, AttemptStopped(at=time.time(), id=stopped.id, attempt=1,
                                               evidence=ev(0.05, 500)), f"{stopped.id}:x:again")
    third = await started(snapshot_every=0)
    await until(lambda: third.leader, "the lease")
    later = (await ValorClient(nc).submit(NewPromise(title="after the snapshot")))["0"]
    [item] = await take_work(js)
    assert item.id == later
    await succeed(js, item, "done", usd=0.5)
    await caught_up(third, js)
    assert logged(caplog, "projection snapshot loaded")
    after = await served_totals(nc, third)
    assert after["total"]["usd"] == 2.5 and after["total"]["attempts"] == 5
    assert {k: v for k, v in after["by_plan"].items() if k != "None"} == {
        k: v for k, v in before["by_plan"].items() if k != "None"}
    assert await usage_json(nats_server.url) == after
