"""Every service serves Prometheus metrics and a health check on its own port."""

import json
import urllib.error
import urllib.request

import pytest
from prometheus_client import REGISTRY

from schemas.commands import NewPromise as T
from services.executor.worker import Executor
from services.scheduler.service import Scheduler
from valor import metrics
from valor.client import ValorClient
from valor.natsserver import free_port


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def engine(nc):
    scheduler, executor = Scheduler(nc), Executor(nc, ["default"], slots=2, executor_id="m-exec")
    await executor.start()
    await scheduler.start()
    yield scheduler
    await scheduler.stop()
    await executor.stop(grace=1)


async def test_attempts_dispatches_and_retries_are_counted(nc, engine):
    before = (sample("valor_dispatched_total", queue="default", type="fail"),
              sample("valor_retries_total", type="fail"),
              sample("valor_attempts_total", type="fail", outcome="failed"),
              sample("valor_attempts_total", type="fail", outcome="succeeded"))
    client = ValorClient(nc)
    ids = await client.submit(T(type="fail", input={"times": 1}, retries=1, backoff=0.1))
    assert await client.wait([ids["0"]], timeout=10) == {ids["0"]: "succeeded"}
    after = (sample("valor_dispatched_total", queue="default", type="fail"),
             sample("valor_retries_total", type="fail"),
             sample("valor_attempts_total", type="fail", outcome="failed"),
             sample("valor_attempts_total", type="fail", outcome="succeeded"))
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 1, 1, 1]
    assert sample("valor_dispatch_latency_seconds_count", queue="default") >= 2


async def test_metrics_and_health_are_served_over_http(engine):
    port = free_port()
    server = metrics.serve(engine.health, port=port)
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        assert "valor_events_applied_total" in text and "valor_dispatch_latency_seconds_bucket" in text
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").read())
        assert health["ok"] is True and health["scheduler"] == engine.name
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/nope")
    finally:
        server.shutdown()
        server.server_close()


def test_unhealthy_service_answers_503():
    port = free_port()
    server = metrics.serve(lambda: {"ok": False, "why": "disconnected"}, port=port)
    try:
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz")
        assert exc.value.code == 503
    finally:
        server.shutdown()
        server.server_close()


def test_no_port_means_no_server(monkeypatch):
    monkeypatch.delenv("VALOR_METRICS_PORT", raising=False)
    assert metrics.serve(lambda: {"ok": True}) is None
