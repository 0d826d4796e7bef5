"""``make demo``: the original proposal's three workflows, visible as they run.

1. A parallel review: three reviews at once, then a summary that receives all three.
2. A chain: set up the test environment -> write tests -> run them.  With the
   Claude Code CLI installed and an API key (or a login), the steps are real
   ``code`` tasks in the workspace (git, a venv, the tests) and their evidence
   is printed; otherwise stand-ins (sleep, echo) run, and the demo says so.
3. Restart recovery: the executor running a chain's middle step and the active
   scheduler are killed (kill -9 through supervisord, which restarts them);
   the chain still completes.

Runs against the cluster that ``make up`` started (``VALOR_NATS_URL``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from nats.aio.msg import Msg

from promises import evidence, story
from promises.states import State
from schemas.commands import NewPromise as T
from schemas.events import Created, Started, decode_promise_event
from valor import bus
from valor.client import ValorClient


class Timeline:
    """Prints every event of the demo's promises as it is stored."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.titles: dict[int, str] = {}
        self.started: dict[int, Started] = {}
        self.changed = asyncio.Event()

    async def on_event(self, msg: Msg) -> None:
        event = decode_promise_event(msg.data)
        if event.id not in self.titles:
            return
        if isinstance(event, Started):
            self.started[event.id] = event
        if isinstance(event, Created | story.BOOKKEEPING):
            return
        print(f"  {time.monotonic() - self.t0:6.1f}s  #{event.id:<4} {self.titles[event.id]:<40} {story.phrase(event)}")
        self.changed.set()


async def run_plan(client: ValorClient, timeline: Timeline, title: str, tasks: list[T]) -> dict[str, int]:
    print(f"\n== {title}")
    ids = await client.submit(*tasks)
    for task in tasks:
        timeline.titles[ids[task.name]] = task.title
    print("  promised: " + ", ".join(f"#{ids[t.name]} {t.name}" for t in tasks))
    return ids


def review_plan() -> list[T]:
    files = ["auth.py", "api.py", "database.py"]
    reviews = [T(name=f"review_{f.split('.')[0]}", title=f"review {f} for security issues", type="sleep",
                 input={"seconds": 2}) for f in files]
    summary = T(name="summary", title="summarise the three reviews", type="echo",
                input={"task": "summary"}, after=[r.name for r in reviews])
    return reviews + [summary]


def chain_plan(seconds: float) -> list[T]:
    return [
        T(name="setup", title="set up the test environment", type="sleep", input={"seconds": seconds}),
        T(name="write", title="write unit tests", type="sleep", input={"seconds": seconds}, after=["setup"]),
        T(name="run", title="run the test suite", type="echo", input={"task": "run"}, after=["write"]),
    ]


def coding_chain(folder: str) -> list[T]:
    """The chain as real Claude Code work, in a folder of its own in the workspace."""
    return [
        T(name="setup", title="set up the test environment", type="code",
          input=f"Create the directory {folder}. In it, in one shell command, initialise a git repository and "
                "create a Python virtualenv .venv (python3 -m venv .venv)."),
        T(name="write", title="write unit tests", type="code", after=["setup"],
          input=f"In {folder}, write app.py with a function add(a, b) and test_app.py with unittest tests for "
                "it (at least three cases). Do not run them."),
        T(name="run", title="run the test suite", type="code", after=["write"],
          input=f"In {folder}, run `.venv/bin/python -m unittest -v` and report how many tests ran and passed."),
    ]


def claude_ready(environ=os.environ) -> str | None:
    """Why the real chain cannot run here, or None when it can."""
    cli = environ.get("VALOR_CLAUDE_BIN") or shutil.which("claude", path=environ.get("PATH"))
    if not cli:
        return "the Claude Code CLI is not installed (npm install -g @anthropic-ai/claude-code)"
    home = Path(environ.get("CLAUDE_CONFIG_DIR") or Path.home() / ".claude")
    if not environ.get("ANTHROPIC_API_KEY") and not (home / ".credentials.json").exists():
        return "no ANTHROPIC_API_KEY and no Claude Code login"
    return None


async def kill(ctl: str, program: str) -> None:
    print(f"  ...... kill -9 {program} (supervisord restarts it)")
    subprocess.run([*shlex.split(ctl), "signal", "KILL", program], check=False, capture_output=True)


async def active_scheduler(nc) -> str:
    kv = await nc.jetstream().key_value("valor_scheduler")
    return (await kv.get("leader")).value.decode()


async def main(ctl: str) -> int:
    nc = await bus.connect(name="demo")
    client = ValorClient(nc, by="demo")
    timeline = Timeline()
    await nc.subscribe("promise.*.*", cb=timeline.on_event)

    ids = await run_plan(client, timeline, "1. parallel code review, then a summary that receives all three",
                         review_plan())
    await client.wait(list(ids.values()), timeout=60)
    p, _ = await client.promise(ids["summary"])
    print("  summary received: " + json.dumps(sorted(p.result["deps"])))

    missing = claude_ready()
    if missing is None:
        folder = time.strftime("demo-%Y%m%d-%H%M%S")
        ids = await run_plan(client, timeline, f"2. chain with Claude Code: set up -> write tests -> run them "
                             f"(in the workspace's {folder}/)", coding_chain(folder))
        await client.wait(list(ids.values()), timeout=900)
        for name in ("setup", "write", "run"):
            p, _ = await client.promise(ids[name])
            told = evidence.brief(p.evidence) or p.error or ""
            print(f"  #{p.id} {name}: {p.state} · {told}")
    else:
        print(f"\n  (stand-ins for chain 2: {missing})")
        ids = await run_plan(client, timeline, "2. chain: set up -> write tests -> run them", chain_plan(1))
        await client.wait(list(ids.values()), timeout=60)
        p, _ = await client.promise(ids["run"])
        print(f"  'run' received the result of #{', #'.join(sorted(p.result['deps']))}")

    ids = await run_plan(client, timeline, "3. restart recovery: services killed mid-chain", chain_plan(4))
    while ids["write"] not in timeline.started:
        await asyncio.sleep(0.1)
    await asyncio.sleep(1)
    executor = timeline.started[ids["write"]].executor
    await kill(ctl, f"executor:{executor}")
    leader = await active_scheduler(nc)
    print(f"  ...... active scheduler is {leader}")
    pid = leader.split("-")[-2]  # scheduler-<host>-<pid>-<nonce>
    status = subprocess.run([*shlex.split(ctl), "status", "scheduler:*"], capture_output=True, text=True)
    for line in status.stdout.splitlines():
        if f"pid {pid}," in line:
            await kill(ctl, f"scheduler:{line.split()[0].split(':')[-1]}")
    states = await client.wait(list(ids.values()), timeout=120)
    ok = set(states.values()) == {State.SUCCEEDED}
    print(f"\n  chain {'completed' if ok else 'did not complete'}: " + ", ".join(f"#{i} {s}" for i, s in states.items()))
    await nc.close()
    return 0 if ok else 1


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ctl", default=".venv/bin/supervisorctl -c var/supervisord.conf",
                        help="how to reach supervisord (for the restart demo)")
    raise SystemExit(asyncio.run(main(parser.parse_args().ctl)))


if __name__ == "__main__":
    cli()
