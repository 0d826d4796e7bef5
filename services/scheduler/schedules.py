"""Recurring promises (decision 51): creating and changing schedules, and firing their ticks.

Pure, like the rest of the decisions.  A tick becomes one ``created`` whose
request id is ``tick:<schedule>:<tick time>``: the projection settles the
schedule up to every tick it has seen, so a scheduler that restarts, fails over
or replays decides no tick twice, and two leaders racing over the same tick
write the same message id, which the stream's duplicate window absorbs.
A tick that will not run is a ``ticks_skipped``; the next run tells the chat.
"""

from __future__ import annotations

import msgspec

from schemas.commands import CommandReply, NewPromise, Schedule, ScheduleChange
from schemas.events import (
    ScheduleCreated,
    ScheduleDeleted,
    SchedulePaused,
    ScheduleResumed,
    SkipReason,
    TicksSkipped,
)
from schemas.subjects import msg_id_for_event
from valor import recurrence
from valor.config import Config

from . import intake  # a module, not its names: intake applies the schedules a respond result asks for
from .effects import Publish
from .projection import Projection
from .projection import Schedule as Sched

# A tick run later than this after its time counts as missed (half the period for short ones).
LATE = 60.0


def create(state: Projection, cmd: Schedule, now: float, config: Config, next_id: int | None = None):
    done = state.by_request.get(cmd.request_id)
    if done and 0 in done:  # redelivered: it exists
        return [], CommandReply(ok=True, ids={"0": done[0]})
    error = _invalid(cmd, config, now)
    if error:
        return [], CommandReply(ok=False, error=error)
    sid = next_id or state.max_id + 1
    t = cmd.task
    event = ScheduleCreated(
        at=now, id=sid, cron=cmd.cron, every=cmd.every, tz=cmd.tz, anchor=float(int(now)),
        title=t.title or (t.input if isinstance(t.input, str) else "") or t.type, task=t.type, input=t.input,
        queue=t.queue, priority=t.priority, max_cost=t.max_cost, chat_id=cmd.chat_id, message_id=cmd.message_id,
        missed=cmd.missed, overlap=cmd.overlap, request_id=cmd.request_id, by=cmd.by)
    return [Publish(event, intake.created_msg_id(cmd.request_id, 0), new_subject=True)], CommandReply(ok=True, ids={"0": sid})


def _invalid(cmd: Schedule, config: Config, now: float) -> str | None:
    if (cmd.cron is None) == (cmd.every is None):
        return "a schedule needs either a cron expression or an interval"
    if cmd.task.type not in config.types:
        return f"unknown task type {cmd.task.type!r}"
    if cmd.missed not in recurrence.MISSED:
        return f"missed must be one of {', '.join(recurrence.MISSED)}"
    if cmd.overlap not in recurrence.OVERLAP:
        return f"overlap must be one of {', '.join(recurrence.OVERLAP)}"
    try:
        recurrence.next_fire(now, cron=cmd.cron, every=cmd.every, anchor=now, tz=cmd.tz)
    except recurrence.RecurrenceError as exc:
        return str(exc)
    return None


_CHANGES = {"pause": SchedulePaused, "resume": ScheduleResumed, "delete": ScheduleDeleted}


def change(state: Projection, cmd: ScheduleChange, now: float):
    s = state.schedules.get(cmd.id)
    if s is None or (cmd.chat_id is not None and s.spec.chat_id != cmd.chat_id):
        return [], CommandReply(ok=False, error=f"no schedule #{cmd.id}")
    if cmd.verb not in _CHANGES:
        return [], CommandReply(ok=False, error=f"unknown change {cmd.verb!r} (pause, resume, delete)")
    if s.deleted:
        return [], CommandReply(ok=False, error=f"schedule #{cmd.id} was deleted")
    if (cmd.verb == "pause") == s.paused and cmd.verb != "delete":
        return [], CommandReply(ok=True, ids={"0": cmd.id})  # already so: nothing to record
    event = _CHANGES[cmd.verb](at=now, id=cmd.id, by=cmd.by)
    # Once per request: a pause, resume and pause again are three facts.
    return [Publish(event, msg_id_for_event(cmd.id, event.__struct_config__.tag, cmd.request_id))], \
        CommandReply(ok=True, ids={"0": cmd.id})


def rules(spec: ScheduleCreated) -> dict:
    return {"cron": spec.cron, "every": spec.every, "anchor": spec.anchor, "tz": spec.tz}


def next_tick(s: Sched) -> float:
    return recurrence.next_fire(s.settled, **rules(s.spec))


def fire(state: Projection, now: float, config: Config, next_id: int) -> list[Publish]:
    """The ticks due at ``now``: a run each (at most one per schedule), or a ``ticks_skipped``."""
    effects: list[Publish] = []
    for sid in sorted(state.schedules):
        s = state.schedules[sid]
        if not s.active:
            continue
        more = _due(state, s, now, config, next_id)
        next_id += sum(1 for e in more if e.new_subject)
        effects += more
    return effects


def _due(state: Projection, s: Sched, now: float, config: Config, next_id: int) -> list[Publish]:
    spec = s.spec
    if next_tick(s) > now:
        return []
    found = recurrence.latest_tick(s.settled, now, **rules(spec))
    if found is None:
        return []
    latest, n = found
    first = next_tick(s)
    period = spec.every or (recurrence.next_fire(latest, **rules(spec)) - latest)
    on_time = now - latest <= min(LATE, period / 2)
    run = on_time or spec.missed == "catch_up_one"
    if run:
        prev = state.promises.get(s.last_run) if s.last_run is not None else None
        busy = prev is not None and not prev.terminal
        if prev is not None and busy and (spec.overlap == "skip" or (spec.overlap == "queue" and prev.attempt == 0)):
            return [_skipped(spec, first, latest, n, "overlap", now)]
    else:
        return [_skipped(spec, first, latest, n, "missed", now)]
    effects = [_skipped(spec, first, _before(latest, spec), n - 1, "missed", now)] if n > 1 else []
    told = s.skipped + n - 1
    return effects + [_run(spec, latest, told, now, config, next_id)]


def _before(tick: float, spec: ScheduleCreated) -> float:
    """The tick just before ``tick`` (the last of those skipped ahead of a run)."""
    if spec.every is not None:
        return tick - spec.every
    return tick - 1e-3  # settles up to just before the run's tick: the run's tick itself stays due


def _skipped(spec: ScheduleCreated, first: float, last: float, count: int, reason: SkipReason, now: float) -> Publish:
    event = TicksSkipped(at=now, id=spec.id, first=first, last=last, count=count, reason=reason)
    return Publish(event, msg_id_for_event(spec.id, "ticks_skipped", recurrence.tick_key(last)))


def tick_request(schedule_id: int, tick: float) -> str:
    return f"tick:{schedule_id}:{recurrence.tick_key(tick)}"


def _run(spec: ScheduleCreated, tick: float, skipped: int, now: float, config: Config, promise_id: int) -> Publish:
    note = f", {skipped} tick{'s' if skipped != 1 else ''} skipped before this one" if skipped else ""
    task = NewPromise(title=f"{spec.title} (schedule #{spec.id}{note})", type=spec.task, input=spec.input,
                      priority=spec.priority, queue=spec.queue, max_cost=spec.max_cost,
                      key=f"schedule:{spec.id}" if spec.overlap == "queue" else None)
    request = tick_request(spec.id, tick)
    event = intake.build_created(task, promise_id, [], now, config, request_id=request, index=0,
                          chat_id=spec.chat_id, message_id=spec.message_id)
    event = msgspec.structs.replace(event, schedule_id=spec.id, tick=tick, skipped=skipped)
    return Publish(event, intake.created_msg_id(request, 0), new_subject=True)


def wake_at(state: Projection) -> float | None:
    times = [next_tick(s) for s in state.schedules.values() if s.active]
    return min(times) if times else None
