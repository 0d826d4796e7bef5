"""The real Claude Code CLI, installed from npm once per session, talking to a fake Anthropic API.

The CLI is pinned (``CLAUDE_CODE_VERSION``) and cached under ``var/npm/``, so a
second session reuses it and a fresh clone (CI) installs it itself.  Tests that
need it take the ``claude_env`` fixture: the CLI on ``$VALOR_CLAUDE_BIN``, the
fake on ``$ANTHROPIC_BASE_URL``, a dummy key, and a private config directory so
nothing is written to the real ``~/.claude``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from services.executor.claude import claude_handler
from services.executor.worker import Executor
from tests.fakes import FakeAnthropic, fake_anthropic  # noqa: F401
from valor import config as valor_config

CLAUDE_CODE_VERSION = "2.1.332"
PACKAGE = f"@anthropic-ai/claude-code@{CLAUDE_CODE_VERSION}"
CACHE = Path(__file__).resolve().parents[2] / "var" / "npm" / f"claude-code-{CLAUDE_CODE_VERSION}"
INSTALL_TIMEOUT = 240
# Settings of the developer's own environment that would steer the CLI away from the fake.
FOREIGN_ENV = ("ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_MODEL", "ANTHROPIC_SMALL_FAST_MODEL", "CLAUDE_CODE_USE_BEDROCK",
               "CLAUDE_CODE_USE_VERTEX", "CLAUDE_CODE_USE_FOUNDRY", "CLAUDE_CODE_OAUTH_TOKEN", "HTTPS_PROXY",
               "HTTP_PROXY", "https_proxy", "http_proxy")


def _version(binary: Path) -> str | None:
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.split()[0] if out.returncode == 0 and out.stdout.strip() else None


@pytest.fixture(scope="session")
def claude_cli() -> Path:
    """The pinned CLI's path, installed with npm into var/npm/ if it is not there yet."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip(f"npm NOT FOUND: cannot install {PACKAGE}; the Claude Code tests need Node.js and npm")
    binary = CACHE / "node_modules" / ".bin" / "claude"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:  # two sessions at once install it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _version(binary) != CLAUDE_CODE_VERSION:
            done = subprocess.run(
                [npm, "install", "--prefix", str(CACHE), "--no-audit", "--no-fund", "--no-save",
                 "--loglevel=error", PACKAGE],
                capture_output=True, text=True, timeout=INSTALL_TIMEOUT, stdin=subprocess.DEVNULL,
            )
            if done.returncode != 0:
                pytest.fail(f"npm install {PACKAGE} failed ({done.returncode}):\n{done.stderr[-3000:]}")
            if _version(binary) != CLAUDE_CODE_VERSION:
                # An npm that skips install scripts leaves a placeholder; its postinstall puts the binary in.
                package = CACHE / "node_modules" / "@anthropic-ai" / "claude-code"
                subprocess.run([shutil.which("node") or "node", "install.cjs"], cwd=package, capture_output=True,
                               timeout=INSTALL_TIMEOUT, stdin=subprocess.DEVNULL)
        version = _version(binary)
    if version != CLAUDE_CODE_VERSION:
        pytest.fail(f"{binary} --version says {version!r}, expected {CLAUDE_CODE_VERSION}")
    return binary


@pytest.fixture
def claude_env(claude_cli: Path, fake_anthropic: FakeAnthropic, tmp_path: Path,  # noqa: F811
               monkeypatch: pytest.MonkeyPatch) -> FakeAnthropic:
    """The CLI pointed at the fake API; returns the fake for the test to script."""
    for name in FOREIGN_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VALOR_CLAUDE_BIN", str(claude_cli))
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_anthropic.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-not-a-real-key")
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "claude-config"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    # Valor's own directory (whose var/ tasks may not read, and where package caches go) is the test's.
    (tmp_path / "valor").mkdir(exist_ok=True)
    monkeypatch.chdir(tmp_path / "valor")
    return fake_anthropic


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return tmp_path / "workspace"


@pytest.fixture
def config(workspace: Path) -> valor_config.Config:
    """The shipped task types, with the test's own workspace."""
    return valor_config.parse(f'workspace = "{workspace}"\n')


@pytest_asyncio.fixture
async def claude_executor(nc, config) -> Iterator[Executor]:
    """An executor on the ``code`` queue running every Claude Code type of the config."""
    handlers = {name: claude_handler(name, t, config) for name, t in config.types.items() if t.handler == "claude"}
    ex = Executor(nc, ["code"], 2, handlers=handlers, executor_id="test-claude", fetch_timeout=0.2,
                  heartbeat_interval=0.2)
    await ex.start()
    yield ex
    await ex.stop(grace=1.0)


def processes_in(directory: Path) -> dict[int, int]:
    """Live processes (pid -> process group) whose working directory is ``directory`` or below it."""
    found = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cwd = os.readlink(proc / "cwd")
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and (cwd == str(directory) or cwd.startswith(f"{directory}/")):
            found[int(proc.name)] = int(fields[2])
    return found


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group (zombies waiting for a reaper do not count)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found
