"""``--slots``: how an executor's slots are split between its queues (pure)."""

import pytest

from services.executor.slots import Pool, SlotsError, pools_for, queues_of, sharing, spec_of


def test_a_plain_number_is_one_pool_shared_by_every_queue_as_before():
    assert pools_for(4, ["default", "respond"]) == [Pool(("default", "respond"), 4)]
    assert pools_for("4", ["default", "respond"]) == [Pool(("default", "respond"), 4)]


def test_named_queues_get_slots_of_their_own():
    pools = pools_for("respond=2,code=2,default=4", ["default", "respond", "code"])
    assert pools == [Pool(("respond",), 2), Pool(("code",), 2), Pool(("default",), 4)]
    assert pools_for({"respond": 1, "default": 3}, ["default", "respond"]) == [Pool(("respond",), 1),
                                                                                Pool(("default",), 3)]


def test_a_number_beside_named_queues_is_shared_by_the_others():
    assert pools_for("respond=2,4", ["default", "respond", "code"]) == [Pool(("respond",), 2),
                                                                         Pool(("default", "code"), 4)]


def test_without_queues_the_named_ones_are_served_and_a_plain_number_serves_default():
    assert queues_of(pools_for("respond=2,code=1", None)) == ["respond", "code"]
    assert pools_for("respond=2,4", None) == [Pool(("respond",), 2), Pool(("default",), 4)]
    assert pools_for(3, None) == [Pool(("default",), 3)]


def test_spec_of_says_it_as_the_flag_would():
    assert spec_of(pools_for("respond=2,4", ["default", "respond", "code"])) == "respond=2,4"


def test_sharing_names_the_queues_that_may_take_a_queue_s_slots():
    assert sharing(pools_for(4, ["default", "respond"]), "respond") == ("default",)
    assert sharing(pools_for("respond=2,4", ["default", "respond"]), "respond") == ()
    assert sharing(pools_for(4, ["default"]), "respond") == ()  # not served here at all


@pytest.mark.parametrize("spec, queues, error", [
    ("respond=2", ["default", "respond"], "no slots for default"),
    ("respond=2,default=2,3", ["default", "respond"], "3 shared slots, but every queue has its own"),
    ("code=2,4", ["default"], r"slots for code, which the queues served \(default\) do not include"),
    ("respond=0,4", ["default", "respond"], "at least 1"),
    (0, ["default"], "at least 1"),
    ("respond=two", ["respond"], "whole number"),
    ("4,2", ["default"], "two shared numbers"),
    ("respond=1,respond=2", ["respond"], "given slots twice"),
    ("a.b=1", None, "invalid queue name 'a.b'"),
    (2, ["a b"], "invalid queue name 'a b'"),
    ("", ["default"], "no slots given"),
    (2, [], "at least one queue"),
])
def test_a_bad_split_is_refused_saying_what_is_wrong(spec, queues, error):
    with pytest.raises(SlotsError, match=error):
        pools_for(spec, queues)
