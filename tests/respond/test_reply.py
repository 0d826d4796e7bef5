"""Honest replies and naming the spawned promises by their ids (pure)."""

import pytest

from promises.story import reply_with_ids
from schemas.commands import NewPromise, RespondCommand
from schemas.events import CommandRun, Evidence, Succeeded
from services.executor.respond.reply import NO_RECORDED_RESULT, announces_work, honest_reply

from .helpers import succeeded, view_of

PLAN = [NewPromise(name="setup", type="code"), NewPromise(name="write", type="code", after=["setup"]),
        NewPromise(name="run", type="shell", after=["write"])]


@pytest.mark.parametrize("text", [
    "I'll set up the environment now.", "I will write the tests.", "On it!", "Starting now.",
    "I’m on it", "I've started the review.", "Let me start with the setup.", "I'm going to run them.",
])
def test_announcing_work(text):
    assert announces_work(text)


@pytest.mark.parametrize("text", [
    "#12 failed because the database refused connections.", "That depends on it.",
    "You have 2 open promises.", "Nothing is running.",
])
def test_not_announcing_work(text):
    assert not announces_work(text)


def test_a_reply_claiming_work_without_a_promise_is_qualified():
    assert honest_reply("I'll run the tests now.", []) == \
        "I haven't started anything yet (no task was created): I'll run the tests now."


def test_a_claim_backed_by_a_promise_or_a_command_stands():
    assert honest_reply("I'll run the tests now.", PLAN[:1]) == "I'll run the tests now."
    assert honest_reply("I'll cancel #12.", [], [RespondCommand(verb="cancel", id=12)]) == "I'll cancel #12."
    assert honest_reply("#12 failed: timeout.", []) == "#12 failed: timeout."


# What the chat's log records, as ChatView.states() gives it.
RECORDED = {12: "succeeded", 13: "failed", 14: "running", 15: "cancelled", 16: "succeeded"}
UNRECORDED = NO_RECORDED_RESULT + ": "


@pytest.mark.parametrize(("reply", "checked"), [
    # Claims with nothing behind them.
    ("Done, fixed it.", UNRECORDED + "Done, fixed it."),
    ("Done, the tests pass.", UNRECORDED + "Done, the tests pass."),
    ("All green!", UNRECORDED + "All green!"),
    ("I've fixed the bug.", UNRECORDED + "I've fixed the bug."),
    ("Finished.", UNRECORDED + "Finished."),
    ("I ran the tests and everything passed.", UNRECORDED + "I ran the tests and everything passed."),
    ("#99 succeeded.", UNRECORDED + "#99 succeeded."),  # no such promise in this chat
    ("#12 succeeded; I also fixed issue #45.", UNRECORDED + "#12 succeeded; I also fixed issue #45."),
    # Claims naming a promise the log has in another state.
    ("#13 passed.", NO_RECORDED_RESULT + " (the log has #13 failed): #13 passed."),
    ("#12 and #14 are done.", NO_RECORDED_RESULT + " (the log has #14 running): #12 and #14 are done."),
    ("#12, #13 and #15 passed.", NO_RECORDED_RESULT + " (the log has #13 failed, #15 cancelled): #12, #13 and #15 passed."),
    ("#13 failed: timeout. I've fixed the bug.",  # "I" follows the promise just named
     "#13 failed: timeout. " + NO_RECORDED_RESULT + " (the log has #13 failed): I've fixed the bug."),
    # Only the sentence that claims too much is qualified.
    ("#14 is still running.\nThe tests pass.", "#14 is still running.\n" + NO_RECORDED_RESULT
     + " (the log has #14 running): The tests pass."),
    ("Here is the summary. Done!", "Here is the summary. " + UNRECORDED + "Done!"),
    # Claims pointing at a promise recorded as succeeded stand.
    ("#12 succeeded: the tests pass.", "#12 succeeded: the tests pass."),
    ("#12 succeeded. All 14 tests pass.", "#12 succeeded. All 14 tests pass."),
    ("#12 and #16 are done.", "#12 and #16 are done."),
    ("#12 passed but #13 failed.", "#12 passed but #13 failed."),
    ("#12's tests passed, #14 is still running.", "#12's tests passed, #14 is still running."),
    ("Yes, #12 fixed it: the build is green.", "Yes, #12 fixed it: the build is green."),
    # No claim at all: failures, negations, questions, conditions, plans.
    ("#13 finished with an error.", "#13 finished with an error."),
    ("#14 is not done yet.", "#14 is not done yet."),
    ("The tests haven't passed.", "The tests haven't passed."),
    ("Nothing has finished yet.", "Nothing has finished yet."),
    ("Did the tests pass?", "Did the tests pass?"),
    ("Valor posts the results here once they are finished.", "Valor posts the results here once they are finished."),
    ("Here is how it works: setup runs first.", "Here is how it works: setup runs first."),
    ("Planned: setup, then write, then run.", "Planned: setup, then write, then run."),
    ("#15 was cancelled.", "#15 was cancelled."),
])
def test_a_claimed_result_needs_a_promise_recorded_as_succeeded(reply, checked):
    assert honest_reply(reply, [], recorded=RECORDED) == checked


def test_a_claimed_result_is_checked_even_when_the_turn_promised_work():
    """What was promised this turn has no result yet: it cannot back a claim."""
    assert honest_reply("Planned the fix; the tests pass.", PLAN, recorded=RECORDED) == \
        UNRECORDED + "Planned the fix; the tests pass."
    assert honest_reply("The tests pass.", []) == UNRECORDED + "The tests pass."  # nothing recorded at all


def test_a_success_whose_last_check_failed_backs_no_claim_that_it_passes():
    checked = Evidence(commands=[CommandRun(command="pytest -q", exit_code=0, check=True),
                                 CommandRun(command="pytest -q tests/unit", exit_code=1, check=True)])
    ok, warned = succeeded(12, task="code"), succeeded(13, task="code")
    warned[-1] = Succeeded(at=50.3, id=13, attempt=1, result="done", evidence=checked)
    states = view_of(*ok, *warned).states()
    assert states == {12: "succeeded", 13: "succeeded, but its last check `pytest -q tests/unit` exited 1"}
    assert honest_reply("#12 succeeded: the tests pass.", [], recorded=states) == "#12 succeeded: the tests pass."
    assert honest_reply("#13 succeeded: the tests pass.", [], recorded=states) == (
        NO_RECORDED_RESULT + " (the log has #13 succeeded, but its last check `pytest -q tests/unit` exited 1): #13 succeeded: the tests pass.")


def test_a_reply_announcing_work_and_claiming_a_result_is_corrected_for_both():
    assert honest_reply("On it. Done, all green.", [], recorded=RECORDED) == \
        "I haven't started anything yet (no task was created): On it. " + UNRECORDED + "Done, all green."


def test_reply_with_ids_names_each_promise_and_its_dependencies():
    out = reply_with_ids("Planned 3 tasks.", {"setup": 12, "write": 13, "run": 14}, PLAN)
    assert out == "Planned 3 tasks.\nPromised: #12 setup, #13 write (after #12), #14 run (after #13)"


def test_reply_with_ids_for_unnamed_tasks_uses_titles():
    tasks = [NewPromise(type="code", title="fix the login test", depends_on=[7])]
    assert reply_with_ids("Promised a code task.", {"0": 20}, tasks) == \
        "Promised a code task.\nPromised: #20 fix the login test (after #7)"
    assert reply_with_ids("ok", {"0": 20}) == "ok\nPromised: #20 0"
    assert reply_with_ids("Nothing to do.", {}) == "Nothing to do."
