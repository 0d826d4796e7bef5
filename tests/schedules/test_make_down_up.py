"""A schedule survives ``make down`` / ``make up`` (issue 17): the shipped stack, brought up and down by the
Makefile itself in a temporary var dir on free ports, with the ``valor`` CLI as a user drives it.

The one test here that runs the whole shipped stack (three R3 nodes, two schedulers, two executors, ingest,
notifier, analytics), twice: it is what caught the NATS permissions schedules lacked, which every test on an
open nats-server passed.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from bench.shipped import free_bases

ROOT = Path(__file__).resolve().parents[2]
VALOR = Path(sys.executable).parent / "valor"

pytestmark = pytest.mark.timeout(300)


class Stack:
    def __init__(self, root: Path) -> None:
        self.root = root
        bases = free_bases()
        self.make_vars = [f"VAR={root / 'var'}", f"VENV={Path(sys.executable).parent.parent}",
                          f"NATS_PORT_BASE={bases['nats']}", f"NATS_CLUSTER_PORT_BASE={bases['cluster']}",
                          f"NATS_MONITOR_PORT_BASE={bases['monitor']}", f"METRICS_PORT_BASE={bases['metrics']}",
                          # The schedule's survival is what is tested, not the 10 s start-up watch (tests/test_deploy.py).
                          "UP_SETTLE=2"]
        config = root / "valor.toml"  # the shipped defaults, not a valor.toml of the checkout
        config.touch()
        # Nothing of the developer's: their cluster, config, CLI context or Telegram account.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("VALOR_", "SUPERVISOR_"))}
        self.env.update(VALOR_CONFIG=str(config), VALOR_CONTEXT=str(root / "context.json"),
                        XDG_CONFIG_HOME=str(root / "xdg"), VALOR_TG_API_ID="", VALOR_TG_API_HASH="",
                        ANTHROPIC_API_KEY="")

    def make(self, target: str) -> None:
        # Output to a file, not a pipe: supervisord's daemon would hold a pipe open after make returns.
        with open(self.root / "make.log", "a+") as out:
            done = subprocess.run(["make", "-s", target, *self.make_vars], cwd=ROOT, env=self.env,
                                  stdout=out, stderr=out, timeout=180)
            out.seek(0)
            assert done.returncode == 0, f"make {target} failed:\n{out.read()[-3000:]}"

    def valor(self, *argv: str) -> str:
        done = subprocess.run([str(VALOR), *argv], cwd=self.root, env=self.env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, f"valor {' '.join(argv)}: {done.stderr}"
        return done.stdout

    def schedules(self) -> list[dict]:
        return json.loads(self.valor("schedule", "list", "--json"))

    def runs(self, sid: int) -> list[dict]:
        return [p for p in json.loads(self.valor("list", "--json")) if f"(schedule #{sid}" in p["title"]]


def until(condition, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
    return found


@pytest.fixture
def stack():
    s = Stack(Path(tempfile.mkdtemp(prefix="valor-down-up-")))
    try:
        yield s
    finally:
        subprocess.run(["make", "-s", "down", *s.make_vars], cwd=ROOT, env=s.env, capture_output=True, timeout=180)
        shutil.rmtree(s.root, ignore_errors=True)


def test_a_schedule_survives_make_down_and_make_up_and_fires_again_telling_what_it_missed(stack):
    stack.make("up")
    sid = int(stack.valor("schedule", "add", "1s", "tick", "--type", "echo", "--input", '"hi"'))
    until(lambda: any(r["state"] == "succeeded" for r in stack.runs(sid)), "a run before make down")
    stack.make("down")
    restarted = time.time()
    stack.make("up")
    [row] = stack.schedules()
    assert (row["id"], row["state"], row["recurrence"]) == (sid, "active", "every 1s")
    until(lambda: any(r["created_at"] > restarted and r["state"] == "succeeded" for r in stack.runs(sid)),
          "a run after make up")
    runs = stack.runs(sid)
    assert len({r["id"] for r in runs}) == len(runs)
    # The ticks passed while the stack was down were skipped on the record and told by the first run after.
    first = min((r for r in runs if r["created_at"] > restarted), key=lambda r: r["id"])
    assert "skipped before this one" in first["title"], first["title"]
