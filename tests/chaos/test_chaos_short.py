"""The chaos suite, short: six rounds of kill -9, a full stop and a partition, then the log is judged.

``make chaos`` runs the long version (100 rounds, 2,000 promises).
"""

from __future__ import annotations

import pytest

from .run import KINDS, Chaos, Options, report

pytestmark = pytest.mark.timeout(240)


async def test_kill_9_of_any_process_full_stop_and_partition_leave_a_log_without_violations():
    opts = Options(rounds=6, promises=300, messages=24, seed=5, round_seconds=3.5, full_stop_round=2,
                   partition_round=4, partition_seconds=6.0, drain_timeout=120.0, verbose=False)
    figures = await Chaos(opts).run()
    assert figures.total_violations == 0, report(figures)
    assert figures.rounds == 6 and sum(figures.kills.values()) == 6
    assert set(figures.kills) == set(KINDS)  # one shuffled cycle: every kind of process once
    assert (figures.full_stops, figures.partitions) == (1, 1)
    # A message deleted before ingest read it never reaches CHAT; every stored one has its respond
    # promise, which promises its echo unless a deletion cancelled it first.
    assert 24 - figures.messages_deleted <= figures.messages_stored <= 24 and figures.messages_edited
    assert figures.responds == figures.messages_stored and figures.promises == 300 + figures.responds + figures.answered
