"""Schedules from the chat, pure: the ``/every`` grammar (a table), ``/schedules`` and its changes over
recorded views, and how the scheduler applies what a respond result asks (decision 51)."""

import msgspec
import pytest

from promises.projection import Projection
from schemas.commands import NewPromise, NewSchedule, RespondCommand, RespondResult
from schemas.events import Created, Dispatched, ScheduleCreated, SchedulePaused, Spawned, Started, Succeeded
from services.executor.respond import commands
from services.notifier import texts
from services.notifier.board import Board
from services.scheduler import intake
from valor.config import DEFAULT, parse

from .helpers import CHAT, message, view_of

NOON = 1_767_268_800.0  # 2026-01-01 12:00 UTC


def every(text: str) -> RespondResult:
    msg = message(f"/every {text}")
    return commands.answer(type(msg)(**{**{f: getattr(msg, f) for f in msg.__struct_fields__}, "at": NOON}),
                           None, DEFAULT)


@pytest.mark.parametrize("text, rule, task, options", [
    ("30m check the deploy", {"every": 1800.0}, ("code", "check the deploy", 5, None), {}),
    ("1d 09:00 run the test suite and tell me what broke", {"cron": "0 9 * * *"},
     ("code", "run the test suite and tell me what broke", 5, None), {}),
    ("2h search flaky tests", {"every": 7200.0}, ("search", "flaky tests", 5, None), {}),
    ('"0 9 * * 1-5" echo standup', {"cron": "0 9 * * 1-5"}, ("echo", "standup", 5, None), {}),
    ("“0 9 * * 1-5” echo curled quotes", {"cron": "0 9 * * 1-5"}, ("echo", "curled quotes", 5, None), {}),
    ("cron 30 6 1 * * echo monthly", {"cron": "30 6 1 * *"}, ("echo", "monthly", 5, None), {}),
    ("weekdays 08:15 echo hi", {"cron": "15 8 * * 1-5"}, ("echo", "hi", 5, None), {}),
    ("1w fri 17:00 echo weekly", {"cron": "0 17 * * 5"}, ("echo", "weekly", 5, None), {}),
    ("1d 09:00 !2 $0.50 search flaky", {"cron": "0 9 * * *"}, ("search", "flaky", 2, 0.5), {}),
    ("1d 09:00 search !1 flaky", {"cron": "0 9 * * *"}, ("search", "flaky", 1, None), {}),
    ("1d 09:00 tz=Europe/Berlin overlap=queue missed=catch_up_one echo x", {"cron": "0 9 * * *"},
     ("echo", "x", 5, None), {"tz": "Europe/Berlin", "overlap": "queue", "missed": "catch_up_one"}),
    ('1h echo {"n": 1}', {"every": 3600.0}, ("echo", {"n": 1}, 5, None), {}),
    ("10m respond hi", {"every": 600.0}, ("code", "respond hi", 5, None), {}),  # respond is no type a chat names
])
def test_every_reads_the_recurrence_its_options_and_the_task(text, rule, task, options):
    r = every(text)
    [s] = r.schedules
    assert (s.cron, s.every) == (rule.get("cron"), rule.get("every"))
    assert (s.task.type, s.task.input, s.task.priority, s.task.max_cost) == task
    assert (s.tz, s.overlap, s.missed) == (options.get("tz", "UTC"), options.get("overlap", "skip"),
                                           options.get("missed", "skip"))
    assert r.promises == [] and r.commands == [] and r.reply.startswith("Scheduled ")


@pytest.mark.parametrize("text, error", [
    ("", "Usage: /every"),
    ("30m", "What should each run do?"),
    ("1w mon", "1w <day> needs a time of day, e.g. 09:00"),
    ("soon do it", "not an interval: 'soon'"),
    ("2d 09:00 x", 'only "1d HH:MM" has a time of day'),
    ('"0 9 * * x" y', "not a cron expression: '0 9 * * x'"),
    ('"0 9 * * 1 y', "needs its closing quote"),
    ("cron 0 9 * y", "cron takes five fields"),
    ("30m tz=Mars/Base x", "unknown time zone 'Mars/Base'"),
    ("30m overlap=never x", "overlap must be one of skip, queue, run, not 'never'"),
    ("30m missed=all x", "missed must be one of skip, catch_up_one"),
    ("30m !0 x", "'!0' is not a priority"),
    ("0m x", "an interval must be positive"),
    ("1s echo x", "too often: 1s between runs; a schedule from a chat runs at most every 1m (schedules.min_interval"),
    ("59s echo x", "too often: 59s between runs"),
])
def test_every_refuses_what_it_cannot_read_and_schedules_nothing(text, error):
    r = every(text)
    assert error in r.reply and r.schedules == []


@pytest.mark.parametrize("floor, text, error", [
    (3600, "30m echo x", "too often: 30m between runs; a schedule from a chat runs at most every 1h"),
    (3600, '"0,30 9 * * *" echo x', "too often: 30m between runs"),  # a cron's shortest gap, not its first
    (3600, '"*/5 * * * *" echo x', "too often: 5m between runs"),
    (3600, "1h echo x", None),
    (3600, "1d 09:00 tz=Europe/Berlin echo x", None),  # a DST change does not shorten a day to under an hour
    (60, '"* * * * *" echo x', None),  # the default floor: cron's finest, every minute, passes
    (0, "1s echo x", None),  # 0: no floor
])
def test_every_runs_no_closer_than_the_configured_minimum_interval(floor, text, error):
    config = parse(f"[schedules]\nmin_interval = {floor}\n")
    r = commands.answer(message(f"/every {text}"), None, config)
    if error is None:
        assert [s.task.input for s in r.schedules] == ["x"]
    else:
        assert error in r.reply and r.schedules == []


def test_every_says_when_the_first_run_is_in_the_schedules_zone():
    assert every("1d 09:00 tz=Europe/Berlin echo x").reply == (
        "Scheduled an echo task, cron 0 9 * * * (Europe/Berlin): x. "
        "First run 2026-01-02 09:00 CET; each run answers this message.")
    assert every("30m !2 $0.50 search flaky").reply == (
        "Scheduled a search task (priority 2), every 30m, at most $0.50 a run: flaky. "
        "First run 2026-01-01 12:30 UTC; each run answers this message.")


def schedule(sid: int, chat_id: int = CHAT, **kw) -> ScheduleCreated:
    return ScheduleCreated(at=NOON, id=sid, every=1800.0, anchor=NOON, title="check the deploy", task="echo",
                           input="check the deploy", chat_id=chat_id, message_id=100, **kw)


def run(pid: int, sid: int, tick: float) -> list:
    return [Created(at=tick, id=pid, title="check the deploy (schedule)", task="echo", chat_id=CHAT,
                    schedule_id=sid, tick=tick),
            Dispatched(at=tick, id=pid, attempt=1), Started(at=tick, id=pid, attempt=1, executor="e"),
            Succeeded(at=tick + 1, id=pid, attempt=1, result="ok")]


def answer(text: str, *events):
    return commands.answer(message(text), view_of(*events), DEFAULT)


def test_schedules_lists_only_this_chats_with_when_state_next_tick_and_last_run():
    events = [schedule(3), *run(4, 3, NOON + 1800), schedule(5, chat_id=99), schedule(6), SchedulePaused(id=6)]
    assert answer("/schedules", *events).reply.splitlines() == [
        "⏰ #3 every 30m: check the deploy [echo] — active, 1 run, last run #4 succeeded, "
        "next 2026-01-01 13:00:00 UTC",
        "⏰ #6 every 30m: check the deploy [echo] — paused, 0 runs"]
    assert answer("/schedules").reply.startswith("This chat has no schedules. Usage: /every")


@pytest.mark.parametrize("text, reply, command", [
    ("/pause 3", 'Pausing schedule #3 (every 30m: check the deploy): no runs until /resume 3.', "pause"),
    ("/pause #6", "Schedule #6 (every 30m: check the deploy) is already paused; /resume 6 runs it again.", None),
    ("/resume 6", "Resuming schedule #6 (every 30m: check the deploy): it runs from its next tick; the ones "
                  "passed while paused are not made up.", "resume"),
    ("/resume 3", "Schedule #3 (every 30m: check the deploy) is not paused.", None),
    ("/unschedule 6", "Deleting schedule #6 (every 30m: check the deploy): no more runs; those made stay.",
     "unschedule"),
    ("/unschedule 5", "There is no schedule #5 in this chat; /schedules lists them.", None),  # another chat's
    ("/pause 4", "There is no schedule #4 in this chat; /schedules lists them.", None),  # a promise, not one
    ("/pause", "Usage: /pause id, e.g. /pause 12; /schedules lists this chat's.", None),
])
def test_pause_resume_unschedule_name_a_schedule_of_this_chat(text, reply, command):
    r = answer(text, schedule(3), *run(4, 3, NOON + 1800), schedule(5, chat_id=99), schedule(6),
               SchedulePaused(id=6))
    assert r.reply == reply
    sid = int(text.split()[-1].lstrip("#")) if command else None
    assert r.commands == ([RespondCommand(verb=command, id=sid)] if command else [])


def test_help_lists_the_schedule_commands():
    text = commands.help_text(DEFAULT)
    assert "/every 30m|2h|1d 09:00|" in text and "/schedules" in text and "/unschedule id" in text


# --- the scheduler's side: what a respond result asks for ---------------------------------------------


def responded(result: RespondResult, pid: int = 10, chat_id: int = CHAT, message_id: int = 100) -> list:
    """The respond promise of a message, answered with ``result``."""
    return [Created(at=NOON, id=pid, title="/every", task="respond", chat_id=chat_id, message_id=message_id,
                    input={"chat_id": chat_id, "message_id": message_id, "sender_id": 1, "text": "/every"}),
            Dispatched(at=NOON, id=pid, attempt=1), Started(at=NOON, id=pid, attempt=1, executor="e"),
            Succeeded(at=NOON, id=pid, attempt=1, result=msgspec.to_builtins(result))]


def answered(result: RespondResult, *before) -> Projection:
    state = Projection()
    for e in [*before, *responded(result)]:
        assert state.apply(e)
    return state


def apply(state: Projection, effects) -> list:
    for pub in effects:
        state.apply(pub.event)
    return [pub.event for pub in effects]


def test_a_schedule_from_a_chat_is_the_chats_and_answers_the_message_that_asked():
    asked = NewSchedule(task=NewPromise(title="deploy", type="echo", input="check"), every=1800.0)
    state = answered(RespondResult(reply="Scheduled", schedules=[asked]))
    effects = intake.spawn_children(state, 10, NOON + 5, DEFAULT)
    created, spawned = apply(state, effects)
    assert isinstance(created, ScheduleCreated) and isinstance(spawned, Spawned)
    assert (created.id, created.chat_id, created.message_id, created.by) == (11, CHAT, 100, "respond #10")
    assert (created.every, created.task, created.input, created.request_id) == (1800.0, "echo", "check",
                                                                                "spawn:10:schedule:0")
    assert [pub.msg_id for pub in effects][0] == "req:spawn:10:schedule:0:0" and effects[0].new_subject
    assert spawned.schedules == [11] and spawned.error is None and spawned.children == {}


def test_a_schedule_the_scheduler_refuses_is_named_on_spawned():
    asked = NewSchedule(task=NewPromise(type="nonesuch", input="x"), every=60.0)
    events = apply(state := answered(RespondResult(schedules=[asked])),
                   intake.spawn_children(state, 10, NOON, DEFAULT))
    [spawned] = events
    assert spawned.schedules == [] and spawned.error == "schedule not created: unknown task type 'nonesuch'"


def test_a_chat_changes_only_its_own_schedules():
    state = answered(RespondResult(commands=[RespondCommand(verb="pause", id=3), RespondCommand(verb="unschedule", id=5),
                                             RespondCommand(verb="pause", id=10)]),
                     schedule(3), schedule(5, chat_id=99))
    events = apply(state, intake.spawn_children(state, 10, NOON + 1, DEFAULT))
    assert [(type(e).__name__, e.id) for e in events] == [("SchedulePaused", 3), ("Spawned", 10)]
    assert state.schedules[3].paused and not state.schedules[5].deleted


def test_the_reply_to_every_names_the_schedule_it_made():
    board = Board()
    result = RespondResult(reply="Scheduled an echo task, every 30m: x.", schedules=[
        NewSchedule(task=NewPromise(type="echo", input="x"), every=1800.0)])
    for seq, e in enumerate([Created(at=0.0, id=1, title="/every", task="respond", chat_id=CHAT, message_id=5),
                             Succeeded(at=1.0, id=1, attempt=1, result=msgspec.to_builtins(result)),
                             Spawned(at=1.0, id=1, schedules=[2])], 1):
        board.apply(e, seq)
    assert texts.respond_terminal(board.items[1], board) == "Scheduled an echo task, every 30m: x.\nSchedule: #2"
