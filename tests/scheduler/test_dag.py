import pytest

from promises.plan import PlanError, validate_plan
from schemas.commands import NewPromise as T


def states(known):
    return lambda pid: known.get(pid)


def test_plan_is_ordered_parents_first():
    tasks = [T(name="run", after=["write"]), T(name="write", after=["setup"]), T(name="setup")]
    assert validate_plan(tasks, states({})) == [2, 1, 0]


def test_cycle_is_rejected_naming_its_path():
    tasks = [T(name="a", after=["c"]), T(name="b", after=["a"]), T(name="c", after=["b"])]
    with pytest.raises(PlanError, match=r"the plan has a cycle: a -> c -> b -> a"):
        validate_plan(tasks, states({}))


def test_unknown_task_name_is_rejected():
    with pytest.raises(PlanError, match="task 'b' is after unknown task 'nope'"):
        validate_plan([T(name="a"), T(name="b", after=["nope"])], states({}))


def test_unknown_promise_id_is_rejected():
    with pytest.raises(PlanError, match="task '#1' depends on unknown promise #99"):
        validate_plan([T(depends_on=[99])], states({}))


def test_depending_on_a_cancelled_promise_is_rejected():
    with pytest.raises(PlanError, match="depends on #4, which was cancelled"):
        validate_plan([T(name="x", depends_on=[4])], states({4: "cancelled"}))


def test_unknown_type_and_bad_priority_are_rejected():
    with pytest.raises(PlanError, match="unknown type 'warp'"):
        validate_plan([T(name="x", type="warp")], states({}), lambda t: t == "noop")
    with pytest.raises(PlanError, match="priority 0"):
        validate_plan([T(name="x", priority=0)], states({}))


def test_duplicate_names_are_rejected():
    with pytest.raises(PlanError, match="two tasks are named 'a'"):
        validate_plan([T(name="a"), T(name="a")], states({}))
