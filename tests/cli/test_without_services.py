"""What the CLI says when NATS runs but Valor does not (yet)."""

from __future__ import annotations

import asyncio

import msgspec
from click.testing import CliRunner

from schemas import subjects
from schemas.commands import ExecutorHeartbeat
from valor import bus, cli
from valor.client import ValorClient


def invoke(url: str, *args: str):
    return CliRunner().invoke(cli.main, list(args), env={"VALOR_NATS_URL": url})


def test_nats_without_valor_streams_exits_3_saying_to_start_valor(nats_server):
    result = invoke(nats_server.url, "list")
    assert result.exit_code == 3
    assert len(result.stderr.splitlines()) == 1
    assert "has no Valor streams" in result.stderr and "make up" in result.stderr


def test_status_without_valor_streams_shows_them_missing(nats_server):
    result = invoke(nats_server.url, "status")
    assert result.exit_code == 0, result.output
    assert "PROMISES  MISSING" in result.stdout
    assert "scheduler  NONE active" in result.stdout


def test_submit_without_a_scheduler_exits_3_saying_the_request_waits(nats_server, monkeypatch):
    async def create_streams():
        nc = await bus.connect(nats_server.url)
        await bus.ensure_streams(nc.jetstream(), 1)
        await nc.close()

    asyncio.run(create_streams())
    monkeypatch.setattr(cli, "REPLY_TIMEOUT", 0.3)
    result = invoke(nats_server.url, "submit", "nobody answers")
    assert result.exit_code == 3
    assert result.stderr == ("valor: no answer from the scheduler within 0.3s; the request is stored and runs "
                             "when a scheduler is active (see `valor status`)\n")


def test_status_lists_each_live_heartbeat_and_skips_a_deleted_key_and_a_foreign_value(nats_server):
    async def run() -> dict:
        nc = await bus.connect(nats_server.url)
        js = nc.jetstream()
        await bus.ensure_streams(js, 1)
        kv = await js.key_value(subjects.EXECUTORS_BUCKET)
        beat = ExecutorHeartbeat(executor="e1", queues=["default"], slots=4, busy=1, at=1.0)
        await kv.put("e1", msgspec.json.encode(beat))
        await kv.put("gone", msgspec.json.encode(beat))
        await kv.delete("gone")  # an executor that stopped: its key deleted at once
        await kv.put("odd", b"not a heartbeat")
        status = await ValorClient(nc).status()
        await nc.close()
        return status

    status = asyncio.run(run())
    assert list(status["executors"]) == ["e1"] and not status["errors"]
    assert (status["executors"]["e1"]["slots"], status["executors"]["e1"]["busy"]) == (4, 1)
