"""Record the golden PROMISES logs: ``.venv/bin/python -m tests.golden.record`` (or ``make golden``).

Each scenario is played by the scheduler's own pure core (``tests/scheduler/sim.py``:
intake, ``decide`` and the fold, as the scheduler service runs them).  A chat's
command is answered by the real command agent (``respond/commands.answer``), an
LLM's answer is written as the agent would return it, and the executor's facts
are written in at fixed times, so every recording is the same.  The events
are written one per line, in log order, as they are stored on the stream.
``test_golden.py`` checks that a fresh recording still equals the committed one
(so a change in the scheduler's decisions shows up as a diff to review) and
folds each log into the projection, the notifier's board and the story.

After a deliberate change to what the scheduler records, run this and review
the diff of ``tests/golden/*.jsonl`` like any other change.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import msgspec

from schemas.commands import NewPromise
from schemas.events import AttemptFailed, MessageReceived, Progress, PromiseEvent, Started, Succeeded
from services.executor.respond import commands
from services.executor.respond.view import chat_view
from services.scheduler import intake
from tests.scheduler.sim import Sim
from valor.config import DEFAULT

HERE = Path(__file__).parent
CHAT, ASKED = 501, 10  # the chat and the message that asked


class Scenario(Sim):
    """A Sim whose executor facts carry durations, at times the scenario moves on by hand."""

    def ask(self, text: str, result: dict | None = None, message_id: int = ASKED) -> int:
        """A chat message answered with ``result`` (None: the command agent's answer); its promises are created."""
        msg = MessageReceived(at=self.now, chat_id=CHAT, message_id=message_id, sender_id=7, sender_name="Ana",
                              text=text)
        if result is None:
            view = chat_view(enumerate(self.log, 1), CHAT, [msg])
            result = msgspec.to_builtins(commands.answer(msg, view, DEFAULT))
        self.fold(intake.respond_for_message(self.state, msg, self.now))
        self.step()
        [respond] = self.take()
        self.ok(respond, result, took=0.5)
        self.settle()  # spawns the promises the answer asked for, and dispatches the ready ones
        return respond.id

    def start(self, item, took: float = 0.0) -> None:
        self.record(Started(at=self.now, id=item.id, attempt=item.attempt, executor="exec-1"))
        self.now += took

    def ok(self, item, result=None, took: float = 1.0) -> None:
        self.start(item)
        self.now += took
        self.record(Succeeded(at=self.now, id=item.id, attempt=item.attempt, result=result, duration=took))

    def fail(self, item, error: str, took: float = 1.0) -> None:
        self.start(item)
        self.now += took
        self.record(AttemptFailed(at=self.now, id=item.id, attempt=item.attempt, error=error, duration=took))

    def item(self, pid: int):
        [item] = [w for w in self.take() if w.id == pid]
        return item


def plan_cascade() -> list[PromiseEvent]:
    """``/plan`` of three steps: the second fails (a ``fail`` task is not retried), so the third is cancelled."""
    sim = Scenario()
    respond = sim.ask("/plan\nsetup: echo: set up\nwrite: fail: write it [after setup]\nrun: echo: run it [after write]")
    ids = sim.state.promises[respond].children
    sim.now += 0.2
    sim.ok(sim.item(ids["setup"]), {"text": "ready"}, took=2.0)
    sim.step()
    sim.fail(sim.item(ids["write"]), "boom", took=1.5)
    sim.settle()  # failed, and the cascade cancels run
    return sim.log


def retry() -> list[PromiseEvent]:
    """An LLM-answered request: one task whose first attempt fails; the retry succeeds."""
    sim = Scenario()
    respond = sim.ask("fetch the report, try again if the server is down", {"reply": "Fetching it.", "promises": [
        msgspec.to_builtins(NewPromise(title="fetch the report", type="shell", retries=2, backoff=0.5))]})
    [pid] = sim.state.promises[respond].children.values()
    sim.now += 0.1
    sim.fail(sim.item(pid), "connection refused", took=0.3)
    sim.step()
    sim.now += 1.0
    sim.step()
    item = sim.item(pid)
    sim.start(item)
    sim.record(Progress(at=sim.now + 0.5, id=pid, attempt=item.attempt, text="downloading", fraction=0.5))
    sim.now += 2.0
    sim.record(Succeeded(at=sim.now, id=pid, attempt=item.attempt, result={"text": "report.pdf, 12 pages"},
                         duration=2.0))
    sim.settle()
    return sim.log


def cancel() -> list[PromiseEvent]:
    """``/do sleep 300``, cancelled from the chat while it runs."""
    sim = Scenario()
    respond = sim.ask("/do sleep 300")
    [pid] = sim.state.promises[respond].children.values()
    sim.now += 0.1
    sim.start(sim.item(pid), took=5.0)
    sim.ask(f"/cancel {pid}", message_id=ASKED + 1)  # the command agent answers with a cancel the scheduler applies
    sim.settle()
    return sim.log


SCENARIOS: dict[str, Callable[[], list[PromiseEvent]]] = {
    "plan_cascade": plan_cascade, "retry": retry, "cancel": cancel}


def encode(events: list[PromiseEvent]) -> bytes:
    return b"".join(msgspec.json.encode(e) + b"\n" for e in events)


def path(name: str) -> Path:
    return HERE / f"{name}.jsonl"


def main() -> None:
    for name, play in SCENARIOS.items():
        path(name).write_bytes(encode(play()))
        print(f"wrote {path(name).relative_to(Path.cwd()) if path(name).is_relative_to(Path.cwd()) else path(name)}")


if __name__ == "__main__":
    sys.exit(main())
