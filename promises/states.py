"""The states a promise is in: the one place their names are spelt.

A ``str`` enum, so a state is its name wherever it goes: JSON views, the read
model's answers, snapshots and ``valor list --state running`` carry the same
words as before, and a state compares equal to its name.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    WAITING = "waiting"  # for its dependencies or its start time
    QUEUED = "queued"  # ready, waiting for a slot
    DISPATCHED = "dispatched"  # handed to WORK, not started yet (shown as queued)
    RUNNING = "running"
    FAILING = "failing"  # an attempt failed and the retry decision is pending (shown as retrying)
    RETRYING = "retrying"
    # Created held for the user's go (decision 45): never ready, never dispatched, until ``approved``.
    AWAITING = "awaiting_approval"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED})
IN_FLIGHT = frozenset({State.DISPATCHED, State.RUNNING})

# What users see: a dispatched attempt is still queued until an executor starts it.
PUBLIC_STATE = {State.DISPATCHED: State.QUEUED, State.FAILING: State.RETRYING}
# The public states in the order a promise goes through them: counts and filters list them so.
PUBLIC_ORDER = (State.AWAITING, State.WAITING, State.QUEUED, State.RUNNING, State.RETRYING,
                State.SUCCEEDED, State.FAILED, State.CANCELLED)


def public(status: State) -> State:
    return PUBLIC_STATE.get(status, status)
