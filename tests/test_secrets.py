"""Secrets stay secret: private files, nothing committed, nothing in any log line.

The services run as real processes (``python -m services.<name>``) with secret
environment variables set, against a nats-server with the shipped users; a
task's error text carries a secret on purpose.  Every byte they log is read back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from schemas.commands import NewPromise
from valor import bus
from valor.client import ValorClient
from valor.natsserver import free_port
from valor.telegram import load_dotenv, session_file

from .test_least_privilege import Secured

ROOT = Path(__file__).resolve().parent.parent

SECRETS = {
    "ANTHROPIC_API_KEY": "sk-ant-api03-corpus-secret-value-0123456789",
    "VALOR_TG_API_HASH": "0123456789abcdef0123456789abcdef",
    "VALOR_TG_BOT_TOKEN": "123456:AAE-secret-bot-token-value",
    "VALOR_TG_PHONE": "+15550001234567",
    "GITHUB_TOKEN": "ghp_secretsecretsecretsecret0123",
}


def test_session_files_are_created_0600_in_a_0700_directory(tmp_path):
    path = session_file("ingest", tmp_path / "sessions")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "sessions").stat().st_mode) == 0o700
    path.chmod(0o644)  # loosened by hand: the next start makes it private again
    assert stat.S_IMODE(session_file("ingest", tmp_path / "sessions").stat().st_mode) == 0o600


def test_a_dotenv_readable_by_others_is_made_0600_when_read(tmp_path, monkeypatch):
    env = tmp_path / ".env"
    env.write_text("export VALOR_TG_API_HASH='abc123abc123'\n")
    env.chmod(0o644)
    monkeypatch.delenv("VALOR_TG_API_HASH", raising=False)
    load_dotenv(env)
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert os.environ["VALOR_TG_API_HASH"] == "abc123abc123"


@pytest.mark.parametrize("path", [".env", "var/secrets/nats-cli.password", "var/nats/auth.conf",
                                  "var/sessions/ingest.session", "notifier.session"])
def test_secret_files_are_never_committed(path):
    ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
    assert ignored.returncode == 0, f"{path} is not ignored by git"


def _start(name: str, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    out = open(log, "wb")
    try:
        return subprocess.Popen([sys.executable, "-m", f"services.{name}", *args], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        out.close()


async def test_services_never_log_a_secret(tmp_path):
    secured = Secured(tmp_path / "var")
    secured.node.start()
    procs: list[subprocess.Popen] = []
    logs: list[Path] = []
    try:
        admin = await secured.connect("admin")
        await bus.ensure_streams(admin.jetstream(), 1)
        config = tmp_path / "valor.toml"
        config.write_text("")
        base = {k: v for k, v in os.environ.items() if k.startswith(("PATH", "HOME", "LANG", "VIRTUAL_ENV"))}
        base.update(SECRETS, VALOR_NATS_URL=secured.node.url, VALOR_REPLICAS="1", VALOR_CONFIG=str(config),
                    VALOR_LOG_LEVEL="DEBUG", PYTHONUNBUFFERED="1", VALOR_SECRETS=str(tmp_path / "none"))
        passwords = {}
        for name, args in (("scheduler", []), ("executor", ["--queues", "default", "--slots", "2"]),
                           ("ingest", []), ("notifier", [])):
            passwords[name] = secured.password(name)
            env = {**base, "VALOR_NATS_USER": name, "VALOR_NATS_PASSWORD": passwords[name],
                   "VALOR_METRICS_PORT": str(free_port())}
            logs.append(tmp_path / f"{name}.log")
            procs.append(_start(name, args, env, logs[-1]))
        # one more executor with a wrong password: the refusal must not quote it
        wrong = "wrong-password-value-0123456789"
        logs.append(tmp_path / "refused.log")
        procs.append(_start("executor", ["--queues", "default"], {**base, "VALOR_NATS_USER": "executor",
                            "VALOR_NATS_PASSWORD": wrong, "VALOR_METRICS_PORT": str(free_port())}, logs[-1]))

        client = ValorClient(await secured.connect("cli"))
        secret = SECRETS["ANTHROPIC_API_KEY"]
        ids = await client.submit(
            NewPromise(type="shell", input={"argv": ["ls", f"/nonexistent/{secret}"]}),  # error text holds it
            NewPromise(type="shell", input={"argv": ["echo", "$ANTHROPIC_API_KEY"]}),  # never expanded
            timeout=30)
        deadline = time.monotonic() + 30
        while True:
            states = [(await client.promise(i))[0] for i in ids.values()]
            if all(s is not None and s.terminal for s in states):
                break
            assert time.monotonic() < deadline, [s and s.state for s in states]
            await asyncio.sleep(0.2)
        assert states[0].state == "failed" and secret in states[0].error  # the log of facts keeps it
        assert states[1].result["stdout_tail"] == "$ANTHROPIC_API_KEY\n"
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        await secured.close()
    text = "\n".join(log.read_text(errors="replace") for log in logs)
    assert '"attempt.failed"' in text or "attempt_failed" in text, text[-2000:]
    for value in [*SECRETS.values(), *passwords.values(), wrong]:
        assert value not in text, f"a secret reached a log: {value[:6]}..."
    assert "***" in text  # the error that held a secret was logged, scrubbed
