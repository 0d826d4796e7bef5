"""Reading plan files: JSON or TOML, strict about keys, defaults left to the task type."""

from __future__ import annotations

import pytest

from schemas.commands import NewPromise
from valor.planfile import PlanFileError, read_plan


def test_json_and_toml_give_the_same_tasks():
    as_json = '{"tasks": [{"name": "a", "type": "echo", "input": {"x": 1}}, {"name": "b", "after": ["a"]}]}'
    as_toml = '[[tasks]]\nname = "a"\ntype = "echo"\ninput = {x = 1}\n\n[[tasks]]\nname = "b"\nafter = ["a"]\n'
    expected = [NewPromise(name="a", type="echo", input={"x": 1}), NewPromise(name="b", after=["a"])]
    assert read_plan(as_json) == expected
    assert read_plan(as_toml) == expected


def test_every_optional_setting_reaches_the_new_promise():
    task = read_plan('{"tasks": [{"name": "a", "title": "T", "priority": 2, "queue": "q", "key": "k", '
                     '"key_limit": 3, "delay": 1.5, "timeout": 9, "retries": 2, "backoff": 0.5, "depends_on": [7]}]}')[0]
    assert task == NewPromise(name="a", title="T", priority=2, queue="q", key="k", key_limit=3, delay=1.5,
                              timeout=9.0, retries=2, backoff=0.5, depends_on=[7])


def test_settings_left_out_stay_unset_so_task_type_defaults_apply():
    task = read_plan('{"tasks": [{"name": "a"}]}')[0]
    assert (task.retries, task.timeout, task.backoff, task.queue) == (None, None, None, None)


@pytest.mark.parametrize("text, message", [
    ('{"tasks": [{"name": "a", "retires": 2}]}', "invalid plan: Object contains unknown field `retires` - at `$.tasks[0]`"),
    ('{"task": []}', "invalid plan: Object contains unknown field `task`"),
    ('{"tasks": [{"type": "echo"}]}', "invalid plan: Object missing required field `name` - at `$.tasks[0]`"),
    ('{"tasks": [{"name": "a", "after": "b"}]}', "invalid plan: Expected `array`, got `str` - at `$.tasks[0].after`"),
    ('{"tasks": [', "cannot read the plan: invalid JSON: "),
    ('tasks = [', "cannot read the plan: invalid TOML: "),
])
def test_a_malformed_plan_is_refused_saying_where(text, message):
    with pytest.raises(PlanFileError) as caught:
        read_plan(text)
    assert str(caught.value).startswith(message)
