"""Ticks decided purely: one promise per tick, skips recorded and told, never a burst."""

import pytest

from promises.projection import Projection
from schemas.commands import NewPromise, Schedule, ScheduleChange
from schemas.events import Created, TicksSkipped
from services.scheduler import schedules
from services.scheduler.snapshot import encode, restore
from tests.scheduler.sim import Sim
from valor.config import DEFAULT


def add(sim: Sim, request="s1", **kw) -> int:
    cmd = Schedule(request_id=request, task=NewPromise(type="echo", input="hi"), chat_id=7, message_id=70,
                   **({"every": 10.0} | kw))
    effects, reply = schedules.create(sim.state, cmd, sim.now, DEFAULT)
    assert reply.ok, reply.error
    sim.fold(effects)
    return reply.ids["0"]


def ticks(sim: Sim) -> list[Created]:
    return [e for e in sim.log if isinstance(e, Created) and e.schedule_id is not None]


def skips(sim: Sim) -> list[TicksSkipped]:
    return [e for e in sim.log if isinstance(e, TicksSkipped)]


def finish_runs(sim: Sim):
    sim.step()  # hands out what the last step created
    for item in sim.take():
        sim.run(item, "ok")


def test_each_tick_creates_one_promise_with_its_request_id_and_replies_to_the_asking_message():
    sim = Sim()
    sid = add(sim)
    for _ in range(5):
        sim.now += 10
        sim.step()
        sim.step()  # deciding again at the same time finds nothing more due
        finish_runs(sim)
    got = ticks(sim)
    assert [t.tick for t in got] == [1010.0, 1020.0, 1030.0, 1040.0, 1050.0]
    assert [t.request_id for t in got] == [f"tick:{sid}:{t}" for t in (1010, 1020, 1030, 1040, 1050)]
    assert {(t.chat_id, t.message_id, t.task, t.input) for t in got} == {(7, 70, "echo", "hi")}
    assert not skips(sim)


def test_a_request_redelivered_creates_no_second_schedule():
    sim = Sim()
    sid = add(sim)
    effects, reply = schedules.create(sim.state, Schedule(request_id="s1", task=NewPromise(), every=5.0),
                                      sim.now, DEFAULT)
    assert effects == [] and reply.ids == {"0": sid}


def test_missed_ticks_are_skipped_and_the_next_run_says_how_many():
    sim = Sim()
    add(sim)
    sim.now += 10
    sim.step()
    finish_runs(sim)
    sim.now += 47  # down over ticks 1020, 1030, 1040, 1050; 1057 is past 1050 by more than half a period
    sim.step()
    assert [t.tick for t in ticks(sim)] == [1010.0]
    [skip] = skips(sim)
    assert (skip.first, skip.last, skip.count, skip.reason) == (1020.0, 1050.0, 4, "missed")
    sim.now = 1060.0
    sim.step()
    run = ticks(sim)[-1]
    assert run.tick == 1060.0 and run.skipped == 4 and "4 ticks skipped" in run.title
    finish_runs(sim)
    sim.now = 1070.0
    sim.step()
    assert ticks(sim)[-1].skipped == 0  # told once


def test_catch_up_one_runs_once_for_all_the_missed_ticks():
    sim = Sim()
    add(sim, missed="catch_up_one")
    sim.now += 45
    sim.step()
    [run] = ticks(sim)
    [skip] = skips(sim)
    assert run.tick == 1040.0 and run.skipped == 3 and (skip.first, skip.last, skip.count) == (1010.0, 1030.0, 3)
    sim.step()
    assert len(ticks(sim)) == 1  # never a burst


@pytest.mark.parametrize("overlap,runs,skipped", [("skip", 1, 2), ("run", 3, 0), ("queue", 2, 1)])
def test_a_tick_while_the_previous_run_is_open_follows_the_overlap_policy(overlap, runs, skipped):
    sim = Sim()
    add(sim, overlap=overlap)
    for _ in range(3):  # the first run never finishes
        sim.now += 10
        sim.step()
        sim.step()
    assert len(ticks(sim)) == runs
    assert sum(s.count for s in skips(sim) if s.reason == "overlap") == skipped
    if overlap == "queue":
        assert len({t.concurrency_key for t in ticks(sim)}) == 1


def test_paused_schedules_do_not_fire_and_resume_from_the_next_tick():
    sim = Sim()
    sid = add(sim)

    def change(verb, request):
        sim.fold(schedules.change(sim.state, ScheduleChange(request_id=request, id=sid, verb=verb), sim.now)[0])

    change("pause", "p1")
    sim.now += 35
    sim.step()
    assert not ticks(sim)
    change("resume", "r1")
    sim.step()
    assert not ticks(sim) and not skips(sim)  # ticks passed while paused are not owed
    sim.now = 1040.0
    sim.step()
    assert [t.tick for t in ticks(sim)] == [1040.0]
    finish_runs(sim)
    change("delete", "d1")
    sim.now += 100
    sim.step()
    assert len(ticks(sim)) == 1


def test_a_chat_changes_only_its_own_schedules():
    sim = Sim()
    sid = add(sim)
    effects, reply = schedules.change(sim.state, ScheduleChange(request_id="x", id=sid, verb="pause", chat_id=8),
                                      sim.now)
    assert effects == [] and reply.error == f"no schedule #{sid}"


@pytest.mark.parametrize("kw,error", [
    ({"every": None}, "either a cron expression or an interval"),
    ({"cron": "0 9 * * *"}, "either"),
    ({"every": None, "cron": "nope"}, "not a cron expression"),
    ({"missed": "burst"}, "missed must be"),
    ({"overlap": "maybe"}, "overlap must be"),
    ({"tz": "Nowhere/Land", "every": None, "cron": "0 9 * * *"}, "unknown time zone"),
])
def test_bad_schedules_are_refused_with_a_reason(kw, error):
    sim = Sim()
    cmd = Schedule(request_id="s", task=NewPromise(), **({"every": 10.0} | kw))
    effects, reply = schedules.create(sim.state, cmd, sim.now, DEFAULT)
    assert effects == [] and not reply.ok and error in reply.error


def test_a_restart_from_a_snapshot_or_the_log_decides_no_tick_twice():
    sim = Sim()
    add(sim)
    for _ in range(3):
        sim.now += 10
        sim.step()
    replayed = Projection()
    for seq, e in enumerate(sim.log, 1):
        replayed.apply(e, seq)
    _, restored = restore(encode(sim.state, "x", 0.0))
    for state in (replayed, restored):
        assert schedules.fire(state, sim.now, DEFAULT, state.max_id + 1) == []
        assert state.schedules == sim.state.schedules


def test_cron_schedules_fire_on_the_zone_wall_clock():
    sim = Sim()
    sim.now = 1_735_718_400.0  # 2025-01-01 08:00 UTC = 09:00 Berlin
    add(sim, every=None, cron="0 9 * * *", tz="Europe/Berlin")
    sim.now += 86400
    sim.step()
    assert [t.tick for t in ticks(sim)] == [1_735_718_400.0 + 86400]
