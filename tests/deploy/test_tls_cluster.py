"""TLS: the connect options (VALOR_NATS_CA), and the make up cluster rendered with TLS (NATS_TLS=1) as real
servers.  A promise carried over TLS by the real services: test_hosts_cluster.py."""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
import subprocess
import sys
import time

import health
import pytest
import render

from valor import bus, context
from valor.natsserver import free_port, server_binary
from valor.stack import Service

from .conftest import ROOT


def free_ports() -> render.Ports:
    found: set[int] = set()
    while len(found) < 9:
        found.add(free_port())
    it = iter(sorted(found))
    return render.Ports(*(tuple(next(it) for _ in range(3)) for _ in range(3)))


# --- the connect options (pure) ---------------------------------------------------------------------------

def test_without_a_ca_nats_py_keeps_its_own_tls_settings():
    assert bus.tls_context({}) is None


def test_the_ca_file_makes_a_verifying_context(tmp_path):
    import certs

    certs.ensure_ca(tmp_path)
    tls = bus.tls_context({"VALOR_NATS_CA": str(tmp_path / "ca.pem")})
    assert tls.verify_mode == ssl.CERT_REQUIRED and tls.check_hostname


def test_a_missing_ca_file_is_named_in_a_clear_error(tmp_path):
    with pytest.raises(context.ContextError, match=r"cannot load the NATS TLS files \(.*nope\.pem\)"):
        bus.tls_context({"VALOR_NATS_CA": str(tmp_path / "nope.pem")})
    with pytest.raises(context.ContextError, match="VALOR_NATS_CERT and VALOR_NATS_KEY go together"):
        bus.tls_context({"VALOR_NATS_CERT": str(tmp_path / "c.pem")})


def test_the_recorded_ca_goes_with_the_recorded_url_only(tmp_path):
    import certs

    certs.ensure_ca(tmp_path)
    path = tmp_path / "context.json"
    context.write(path, "tls://127.0.0.1:4222", "cli", tmp_path / "pw", tmp_path, ca=tmp_path / "ca.pem")
    assert json.loads(path.read_text())["ca"] == str(tmp_path / "ca.pem")
    assert bus.tls_context({"VALOR_CONTEXT": str(path)}) is not None
    assert bus.tls_context({"VALOR_CONTEXT": str(path), "VALOR_NATS_URL": "tls://elsewhere:4222"}) is None


# --- a real cluster -----------------------------------------------------------------------------------------

async def test_make_up_with_tls_forms_a_cluster_over_verified_routes_and_clients_need_the_ca(tmp_path):
    var = tmp_path / "var"
    ports = free_ports()
    render.render_auth(var)
    render.render_nats(var, ports, auth=True, tls=True)
    ca = var / "tls" / "ca.pem"
    url = ports.url("tls")
    procs = [Service(name, [server_binary(), "-c", str(var / "nats" / f"{name}.conf")], dict(os.environ),
                     var / f"{name}.log") for name in render.NODES]
    try:
        for p in procs:
            p.start()
        deadline = time.monotonic() + 30
        while not all(health.node_health(p) == "ok" for p in ports.monitor):
            assert all(p.alive for p in procs), "a nats-server exited: " + procs[0].log.read_text()[-1000:]
            assert time.monotonic() < deadline, {p: health.node_health(p) for p in ports.monitor}
            await asyncio.sleep(0.2)
        for port in ports.monitor:  # the routes are TLS and verify each other's certificate
            _, varz = health.http_json(port, "/varz")
            assert (varz["cluster"]["tls_required"], varz["cluster"]["tls_verify"]) == (True, True), varz["cluster"]
            assert varz["tls_required"] is True

        # a server with the CA's certificate but a key the CA never signed is refused on the routes
        import certs

        intruder = render.Node("n9", "127.0.0.1", free_port(), free_port(), free_port())
        certs.ensure_cert(tmp_path / "other-ca", "n9", ["127.0.0.1"])
        (var / "nats" / "n9").mkdir()
        conf = var / "nats" / "n9.conf"
        conf.write_text(render.node_config(intruder, [intruder, *render.local_nodes(ports)], var / "nats" / "n9",
                                           render.Tls(ca, tmp_path / "other-ca"), ""))
        procs.append(Service("n9", [server_binary(), "-c", str(conf)], dict(os.environ), var / "n9.log"))
        procs[-1].start()
        deadline = time.monotonic() + 30
        while not re.search(r"TLS route handshake error: .*unknown authority.*CN=n9", procs[0].log.read_text()):
            assert time.monotonic() < deadline, procs[0].log.read_text()[-1500:]
            await asyncio.sleep(0.2)
        _, routez = health.http_json(ports.monitor[0], "/routez")
        assert {r["remote_name"] for r in routez["routes"]} == {"n2", "n3"}

        tls = bus.tls_context({"VALOR_NATS_CA": str(ca)})

        def password(user: str) -> str:
            return render.password_file(var / "secrets", user).read_text().strip()

        # without the private CA the servers' certificates are not trusted
        with pytest.raises(ssl.SSLCertVerificationError):
            await bus.connect(url, user="cli", password=password("cli"), tls=ssl.create_default_context(),
                              allow_reconnect=False, max_reconnect_attempts=0)

        # the streams as the make up and the systemd and compose files create them: as admin, at R3
        env = {k: v for k, v in os.environ.items() if k.startswith(("PATH", "HOME", "LANG", "VIRTUAL_ENV"))}
        env.update(VALOR_NATS_URL=url, VALOR_NATS_CA=str(ca), VALOR_NATS_USER="admin",
                   VALOR_NATS_PASSWORD_FILE=str(render.password_file(var / "secrets", "admin")),
                   VALOR_CONTEXT=str(tmp_path / "no-context.json"))
        made = subprocess.run([sys.executable, str(ROOT / "deploy" / "health.py"), "streams", "--replicas", "3",
                               "--timeout", "60"], cwd=ROOT, capture_output=True, text=True, timeout=90, env=env)
        assert made.returncode == 0 and "present at R3" in made.stdout, made.stdout + made.stderr
        nc = await bus.connect(url, name="test-cli", user="cli", password=password("cli"), tls=tls)
        try:
            info = await nc.jetstream().stream_info("PROMISES")
            assert info.config.num_replicas == 3 and len(info.cluster.replicas) == 2
        finally:
            await nc.close()
    finally:
        for p in procs:
            p.stop()
