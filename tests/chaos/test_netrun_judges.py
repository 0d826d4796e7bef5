"""The ``--net`` judges on plain values: one active scheduler from samples, creation waits by fault."""

import pytest

from tests.chaos.netrun import creation_figures, leader_spans, two_leaders


def answers(*said, every: float = 0.1, takes: float = 0.01):
    return [(i * every, i * every + takes, v) for i, v in enumerate(said)]


def test_spans_run_from_the_first_answer_to_the_last_asking_and_a_lone_answer_proves_nothing():
    said = answers(False, True, True, None, True, False, True, True, True)
    assert leader_spans(said) == [(0.11, 0.2), (pytest.approx(0.61), pytest.approx(0.8))]  # the lone True: none
    assert leader_spans(answers(True, True, takes=0.2)) == []  # answers slower than the gap: unsure


def test_a_handover_with_a_gap_is_one_leader_and_an_overlap_is_two():
    old = answers(*(t < 20 for t in range(40)))
    new = answers(*(t > 32 for t in range(40)))
    assert two_leaders({"scheduler-1": old, "scheduler-2": new}) == []
    late = answers(*(t > 15 for t in range(40)))
    found = two_leaders({"scheduler-1": old, "scheduler-2": late})
    assert len(found) == 1 and "scheduler-1 led 0.0-1.9 s and scheduler-2 1.6-3.9 s" in found[0]


def test_creation_waits_are_grouped_by_the_fault_they_were_stored_under():
    stored = {"a": (0.0, "none"), "b": (1.0, "split 1|2"), "c": (2.0, "split 1|2"), "d": (3.0, "none")}
    created = {"a": 0.1, "b": 7.0, "c": 2.5}  # d's creation was not seen
    lines = creation_figures(stored, created)
    assert lines == ["stored -> created under none: p50 0.10 s, p99 0.10 s, max 0.10 s (1 requests)",
                     "stored -> created under split 1|2: p50 6.00 s, p99 6.00 s, max 6.00 s (2 requests)",
                     "stored -> created: 1 requests' creation not seen as it passed (missed by the live subscription)"]
