"""Drive the pure scheduler core without NATS: decide, fold back what it publishes."""

from __future__ import annotations

from promises.projection import Projection
from schemas.commands import NewPromise, Submit
from schemas.events import Started, Succeeded
from services.scheduler import intake
from services.scheduler.decide import decide
from services.scheduler.effects import Dispatch, Publish


class Sim:
    def __init__(self, capacity=None, config=None):
        self.state = Projection()
        self.config = config
        self.capacity = {"default": 100, "respond": 10} if capacity is None else capacity
        self.now = 1000.0
        self.work: list = []  # WorkItems handed out, in order
        self.seq = 0
        self.log: list = []  # every event folded, in order

    def fold(self, effects):
        for e in effects:
            if isinstance(e, Publish):
                self.record(e.event)
            elif isinstance(e, Dispatch):
                self.work.append(e.item)

    def record(self, *events):
        for ev in events:
            self.seq += 1
            self.log.append(ev)
            self.state.apply(ev, self.seq)

    def submit(self, *tasks: NewPromise, request_id="r1") -> dict[str, int]:
        effects, reply = intake.submit(self.state, Submit(request_id=request_id, tasks=list(tasks)), self.now)
        assert reply.ok, reply.error
        self.fold(effects)
        return reply.ids

    def step(self):
        d = decide(self.state, self.now, self.capacity, *([self.config] if self.config else []))
        self.fold(d.effects)
        return d

    def settle(self, rounds=20):
        for _ in range(rounds):
            if not self.step().effects:
                return
        raise AssertionError("decisions never settled")

    def take(self):
        items, self.work = self.work, []
        return items

    def run(self, item, result=None):
        self.record(Started(at=self.now, id=item.id, attempt=item.attempt, executor="x"),
                    Succeeded(at=self.now, id=item.id, attempt=item.attempt, result=result))

    def state_of(self, pid):
        return self.state.promises[pid].state
