"""The rendered systemd files run: three node hosts and an executor host, each on its own loopback address,
start their units as systemd would (tests/deploy/systemd_unit.py) and carry a promise to succeeded over TLS,
the executor host holding nothing but the CA, the cluster's URLs and the executor's password."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.request
from pathlib import Path

import hosts
import pytest
import render

from schemas.commands import NewPromise
from valor import bus
from valor.client import ValorClient
from valor.natsserver import free_port
from valor.stack import Service

from .conftest import ROOT
from .systemd_unit import process, read_env_file

NODE_HOSTS = [("h1", "127.0.0.1"), ("h2", "127.0.0.2"), ("h3", "127.0.0.3")]
EXECUTOR_HOST = ("h4", "127.0.0.4")


def ports_free_on_every_address() -> render.Ports:
    """A client, cluster and monitor port that no one holds on 127.0.0.1-3."""
    chosen: list[int] = []
    while len(chosen) < 3:
        port = free_port()
        try:
            for _, address in NODE_HOSTS:
                with socket.socket() as s:
                    s.bind((address, port))
        except OSError:
            continue
        if port not in chosen:
            chosen.append(port)
    return render.Ports((chosen[0],), (chosen[1],), (chosen[2],))


def healthz(address: str, port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://{address}:{port}/healthz", timeout=1) as r:
            return json.loads(r.read()).get("status", "?")
    except OSError as exc:
        return str(exc)


def start(out: Path, host: str, unit: str, tmp: Path, **override: str) -> Service:
    p = process(out / host, unit, tmp / "credentials" / host / unit)
    p.env.update(override)
    service = Service(f"{host}:{unit}", p.argv, p.env, tmp / f"{host}-{unit}.log", cwd=p.cwd)
    service.start()
    return service


async def test_the_rendered_units_run_a_tls_cluster_and_an_executor_host_does_the_work(tmp_path):
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.2", 0))
    except OSError as exc:
        pytest.skip(f"the hosts need loopback addresses beyond 127.0.0.1 (Linux has 127.0.0.0/8): {exc}")
    out = tmp_path / "hosts"
    ports = ports_free_on_every_address()
    placed = hosts.render_systemd(out, ROOT, NODE_HOSTS, [EXECUTOR_HOST], ports, 9100, prefix=ROOT,
                                  monitor_bind=None, bind=None, state=tmp_path / "state")
    assert placed["h4"] == ["valor-executor@0.service"]
    assert sorted(p.name for p in (out / "h4/etc/valor/secrets").iterdir()) == ["nats-executor.password"]
    config = tmp_path / "valor.toml"
    config.write_text("")
    # what a real host would not share with another: its metrics port and its run directory
    local = {"VALOR_CONFIG": str(config), "VALOR_LOG_LEVEL": "INFO"}
    services: list[Service] = []
    try:
        for host, _ in NODE_HOSTS:
            services.append(start(out, host, "valor-nats.service", tmp_path))
        deadline = time.monotonic() + 30
        while not all(healthz(a, ports.monitor[0]) == "ok" for _, a in NODE_HOSTS):
            assert all(s.alive for s in services), services[0].log.read_text()[-1500:]
            assert time.monotonic() < deadline, {a: healthz(a, ports.monitor[0]) for _, a in NODE_HOSTS}
            await asyncio.sleep(0.2)

        streams = start(out, "h1", "valor-streams.service", tmp_path, **local)
        assert streams.proc.wait(90) == 0, streams.log.read_text()[-2000:]
        for host, unit in (("h1", "valor-scheduler@0.service"), ("h4", "valor-executor@0.service")):
            services.append(start(out, host, unit, tmp_path, **local, VALOR_METRICS_PORT=str(free_port()),
                                  VALOR_RUN_DIR=str(tmp_path / host / "run")))

        env = read_env_file(out / "h4/etc/valor/valor.env")
        assert env["VALOR_NATS_URL"].startswith("tls://")
        nc = await bus.connect(env["VALOR_NATS_URL"], name="test-cli", user="cli",
                               password=(out / "secrets/nats-cli.password").read_text().strip(),
                               tls=bus.tls_context({"VALOR_NATS_CA": str(out / "h4/etc/valor/tls/ca.pem")}))
        try:
            client = ValorClient(nc)
            deadline = time.monotonic() + 60
            ids = None
            while ids is None:  # the scheduler answers once it leads and has seen the executor
                try:
                    ids = await client.submit(NewPromise(type="echo", input={"host": "h4"}), timeout=5)
                except TimeoutError:
                    assert time.monotonic() < deadline and all(s.alive for s in services), \
                        "\n".join(s.log.read_text()[-1500:] for s in services[3:])
            (pid,) = ids.values()
            while True:
                state, _ = await client.promise(pid)
                if state is not None and state.terminal:
                    break
                assert time.monotonic() < deadline, state and state.state
                await asyncio.sleep(0.2)
        finally:
            await nc.close()
        assert state.state == "succeeded", state
        assert state.executor == "h4-executor-0"  # the executor host's unit, named after its host
    finally:
        for s in reversed(services):
            s.stop()
    text = "\n".join(s.log.read_text(errors="replace") for s in services[3:])
    for user in ("scheduler", "executor"):
        assert (out / "secrets" / f"nats-{user}.password").read_text().strip() not in text
