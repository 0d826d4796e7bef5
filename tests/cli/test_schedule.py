"""`valor schedule add|list|pause|resume|rm` against the test stack (a real scheduler and executor)."""

import json


def test_a_schedule_is_added_listed_paused_resumed_and_removed(valor):
    added = valor("schedule", "add", "1d", "daily report", "--type", "echo", "--input", '"hi"', "--at", "09:00",
                  "--tz", "Europe/Berlin")
    assert added.exit_code == 0, added.output
    sid = int(added.output)
    [row] = [r for r in json.loads(valor("schedule", "list", "--json").output) if r["id"] == sid]
    assert (row["recurrence"], row["state"], row["type"]) == ("cron 0 9 * * * (Europe/Berlin)", "active", "echo")
    assert row["next_tick"] is not None
    assert valor("schedule", "pause", str(sid)).exit_code == 0
    assert f"#{sid} cron 0 9 * * * (Europe/Berlin): daily report [echo] — paused" in valor("schedule", "list").output
    assert valor("schedule", "resume", str(sid)).exit_code == 0
    assert valor("schedule", "rm", str(sid)).exit_code == 0
    assert sid not in [r["id"] for r in json.loads(valor("schedule", "list", "--json").output)]
    again = valor("schedule", "pause", str(sid))
    assert again.exit_code == 1 and f"schedule #{sid} was deleted" in again.output


def test_a_bad_recurrence_exits_2_saying_what_to_write(valor):
    result = valor("schedule", "add", "soon", "x")
    assert result.exit_code == 2 and "not an interval" in result.output


def test_an_unknown_schedule_exits_1(valor):
    result = valor("schedule", "resume", "99999")
    assert result.exit_code == 1 and "no schedule #99999" in result.output
