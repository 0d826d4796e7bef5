"""The ``valor`` CLI finds the cluster ``make up`` recorded from any directory, and says why when it cannot.

The cluster is a real nats-server with the authorization deploy/render.py
renders (tests/test_least_privilege.py's ``Secured``); the context is written by
the same function ``make up`` calls.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from schemas.events import Created
from services.scheduler.service import Scheduler
from tests.chat.conftest import CONFIG
from tests.test_least_privilege import Secured, render
from valor import bus, context
from valor.cli import main
from valor.client import ValorClient
from valor.natsserver import free_port

VALOR = Path(sys.executable).parent / "valor"


def _record(tmp_path: Path, var: Path, port: int) -> Path:
    """What `make up` leaves in ~/.config/valor/ (here under a private XDG_CONFIG_HOME)."""
    path = tmp_path / "config" / "valor" / "context.json"
    render.render_context(path, tmp_path / "checkout", var, render.Ports.from_bases(port, 0, 0, n=1))
    return path


@pytest.fixture
def node(tmp_path):
    """A secured node without streams: enough for the CLI's connection, nothing after it."""
    s = Secured(tmp_path / "var")
    s.node.start()
    yield s
    s.node.stop()


def _cli(*args: str, **env: str):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_make_up_records_the_url_user_and_password_file_never_the_password(tmp_path):
    root = tmp_path / "checkout"
    (root / "services").mkdir(parents=True)
    where = tmp_path / "config" / "valor" / "context.json"
    assert render.main(["--root", str(root), "--nats-port-base", "5222", "--context", str(where)]) == 0
    recorded = json.loads(where.read_text())
    secret = root / "var" / "secrets" / "nats-cli.password"
    assert recorded == {"url": "nats://127.0.0.1:5222,nats://127.0.0.1:5223,nats://127.0.0.1:5224", "user": "cli",
                        "password_file": str(secret), "root": str(root)}
    assert secret.read_text().strip() not in where.read_text()
    assert context.read({"XDG_CONFIG_HOME": str(tmp_path / "config")}).url == recorded["url"]


def test_the_context_is_found_under_xdg_config_home_or_home_and_valor_context_overrides_both(tmp_path):
    assert context.context_path({"HOME": "/h"}) == Path("/h/.config/valor/context.json")
    assert context.context_path({"HOME": "/h", "XDG_CONFIG_HOME": "/x"}) == Path("/x/valor/context.json")
    assert context.context_path({"HOME": "/h", "VALOR_CONTEXT": "/c.json"}) == Path("/c.json")


def test_explicit_settings_win_over_the_context(tmp_path):
    path = tmp_path / "context.json"
    context.write(path, "nats://recorded:4222", "cli", tmp_path / "pw", tmp_path)
    (tmp_path / "pw").write_text("from-context\n")
    env = {"VALOR_CONTEXT": str(path)}
    assert bus.nats_url(env) == "nats://recorded:4222"
    assert bus.credentials(env) == {"user": "cli", "password": "from-context"}
    assert bus.nats_url({**env, "VALOR_NATS_URL": "nats://other:1"}) == "nats://other:1"
    assert bus.credentials({**env, "VALOR_NATS_USER": "admin", "VALOR_NATS_PASSWORD": "a"}) == {
        "user": "admin", "password": "a"}
    assert bus.credentials({**env, "VALOR_SECRETS": str(tmp_path / "none")}) == {}


def test_a_broken_context_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "context.json"
    path.write_text("{not json")
    result = CliRunner().invoke(main, ["list"], env={"VALOR_CONTEXT": str(path)})
    assert result.exit_code == 3 and len(result.stderr.splitlines()) == 1
    assert str(path) in result.stderr and "make up" in result.stderr


async def test_the_cli_run_from_another_directory_finds_the_cluster_make_up_recorded(tmp_path):
    s = Secured(tmp_path / "var")
    s.node.start()
    scheduler = None
    try:
        admin = await s.connect("admin")
        await bus.ensure_streams(admin.jetstream(), 1)
        scheduler = Scheduler(await s.connect("scheduler"), config=CONFIG)
        await scheduler.start()
        _record(tmp_path, s.var, s.node.port)
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        # A new user's shell: no VALOR_* at all, a directory that is not the checkout.
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "config")}
        proc = await asyncio.create_subprocess_exec(
            str(VALOR), "plan", "-", cwd=elsewhere, env=env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(b'[[tasks]]\nname = "hello"\ntype = "noop"\n'), 30)
        assert (proc.returncode, err.decode()) == (0, "")
        name, promise_id = out.decode().split()
        assert name == "hello"
        _, events = await ValorClient(await s.connect("cli")).promise(int(promise_id))
        assert isinstance(events[0], Created) and events[0].name == "hello"
    finally:
        if scheduler is not None:
            await scheduler.stop()
        await s.close()


def test_a_wrong_password_says_nats_refused_the_user_not_that_it_is_unreachable(node, tmp_path):
    path = _record(tmp_path, node.var, node.node.port)
    render.password_file(node.var / "secrets", "cli").write_text("not-the-password\n")
    result = _cli("list", VALOR_CONTEXT=str(path))
    assert result.exit_code == 3 and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("valor: NATS refused user 'cli': authorization violation")
    assert "cannot reach" not in result.stderr and "not-the-password" not in result.stderr


def test_no_credentials_at_all_says_the_server_refused_an_anonymous_client(node, tmp_path):
    result = _cli("list", VALOR_NATS_URL=node.node.url, VALOR_CONTEXT=str(tmp_path / "absent.json"))
    assert result.exit_code == 3
    assert "refused an anonymous client: authorization violation" in result.stderr
    assert str(tmp_path / "absent.json") in result.stderr and "make up" in result.stderr


def test_a_recorded_cluster_that_is_down_is_reported_down_naming_its_checkout(tmp_path):
    var = tmp_path / "checkout" / "var"
    render.render_auth(var)
    path = _record(tmp_path, var, free_port())
    result = _cli("list", VALOR_CONTEXT=str(path))
    assert result.exit_code == 3 and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("valor: cannot reach NATS at nats://127.0.0.1:")
    assert f"the cluster `make up` started in {tmp_path / 'checkout'} is down" in result.stderr
