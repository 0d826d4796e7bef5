"""The ``--net`` judge of "one active scheduler", on plain samples (time, said it leads; None: no answer)."""

from tests.chaos.netrun import leader_spans, two_leaders


def test_spans_are_runs_of_answers_saying_leader_broken_by_no_or_silence():
    said = [(0.0, False), (0.1, True), (0.2, True), (0.3, None), (0.4, True), (0.5, False), (0.6, True)]
    assert leader_spans(said) == [(0.1, 0.2), (0.4, 0.4), (0.6, 0.6)]


def test_a_handover_with_a_gap_is_one_leader_and_an_overlap_is_two():
    old = [(t / 10, t < 20) for t in range(40)]
    new = [(t / 10 + 0.05, t > 32) for t in range(40)]
    assert two_leaders({"scheduler-1": old, "scheduler-2": new}) == []
    late = [(t / 10, t > 15) for t in range(40)]
    found = two_leaders({"scheduler-1": old, "scheduler-2": late})
    assert len(found) == 1 and "scheduler-1 led 0.0-1.9 s and scheduler-2 1.6-3.9 s" in found[0]
