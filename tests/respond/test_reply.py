"""Honest replies and naming the spawned promises by their ids (pure)."""

import pytest

from schemas.commands import NewPromise, RespondCommand
from services.executor.respond.reply import announces_work, honest_reply, reply_with_ids

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


def test_reply_with_ids_names_each_promise_and_its_dependencies():
    out = reply_with_ids("Planned 3 tasks.", {"setup": 12, "write": 13, "run": 14}, PLAN)
    assert out == "Planned 3 tasks.\nPromised: #12 setup, #13 write (after #12), #14 run (after #13)"


def test_reply_with_ids_for_unnamed_tasks_uses_titles():
    tasks = [NewPromise(type="code", title="fix the login test", depends_on=[7])]
    assert reply_with_ids("Promised a code task.", {"0": 20}, tasks) == \
        "Promised a code task.\nPromised: #20 fix the login test (after #7)"
    assert reply_with_ids("ok", {"0": 20}) == "ok\nPromised: #20 0"
    assert reply_with_ids("Nothing to do.", {}) == "Nothing to do."
