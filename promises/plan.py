"""Validating a plan of new promises: names, references and cycles.

Pure: it sees the plan and a lookup of existing promises' states, and either
returns the order to create the tasks in (parents first) or raises
``PlanError`` with a sentence a user can act on.  Nothing is created for a
plan that fails here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from schemas.commands import NewPromise

from .states import State


class PlanError(ValueError):
    pass


def task_label(task: NewPromise, index: int) -> str:
    return task.name or f"#{index + 1}"


def validate_plan(
    tasks: Sequence[NewPromise],
    state_of: Callable[[int], str | None],
    known_types: Callable[[str], bool] = lambda _: True,
) -> list[int]:
    """Return task indexes in creation order (every task after the tasks it names)."""
    if not tasks:
        raise PlanError("the plan has no tasks")
    names: dict[str, int] = {}
    for i, task in enumerate(tasks):
        if task.name is not None:
            if not task.name.strip():
                raise PlanError(f"task #{i + 1} has an empty name")
            if task.name in names:
                raise PlanError(f"two tasks are named '{task.name}'")
            names[task.name] = i
    for i, task in enumerate(tasks):
        label = task_label(task, i)
        if not task.type or not known_types(task.type):
            raise PlanError(f"task '{label}' has unknown type '{task.type}'")
        if not 1 <= task.priority <= 9:
            raise PlanError(f"task '{label}' has priority {task.priority}; use 1 (highest) to 9")
        if task.retries is not None and task.retries < 0:
            raise PlanError(f"task '{label}' has negative retries")
        if task.timeout is not None and task.timeout <= 0:
            raise PlanError(f"task '{label}' has a timeout of {task.timeout}s; it must be positive")
        if task.key_limit < 1:
            raise PlanError(f"task '{label}' has a concurrency limit below 1")
        for name in task.after:
            if name not in names:
                raise PlanError(f"task '{label}' is after unknown task '{name}'")
            if name == task.name:
                raise PlanError(f"task '{label}' is after itself")
        for dep in task.depends_on:
            state = state_of(dep)
            if state is None:
                raise PlanError(f"task '{label}' depends on unknown promise #{dep}")
            if state in (State.FAILED, State.CANCELLED):
                raise PlanError(f"task '{label}' depends on #{dep}, which {state_word(state)}")
    return topological_order(tasks, names)


def state_word(state: str) -> str:
    words: dict[str, str] = {State.FAILED: "failed", State.CANCELLED: "was cancelled"}
    return words.get(state, f"is {state}")


def topological_order(tasks: Sequence[NewPromise], names: dict[str, int]) -> list[int]:
    """Depth-first order; a back edge is a cycle, reported along its path.

    An explicit stack, not recursion: a chain of a few thousand tasks must get
    an answer, not a RecursionError that would bring the command back forever.
    """
    order: list[int] = []
    state: dict[int, str] = {}  # index -> "visiting" | "done"
    for root in range(len(tasks)):
        if state.get(root) == "done":
            continue
        state[root] = "visiting"
        stack = [(root, iter(tasks[root].after))]
        while stack:
            i, parents = stack[-1]
            name = next(parents, None)
            if name is None:
                stack.pop()
                state[i] = "done"
                order.append(i)
                continue
            j = names[name]
            if state.get(j) == "done":
                continue
            if state.get(j) == "visiting":
                path = [k for k, _ in stack]
                cycle = path[path.index(j):] + [j]
                raise PlanError("the plan has a cycle: " + " -> ".join(task_label(tasks[k], k) for k in cycle))
            state[j] = "visiting"
            stack.append((j, iter(tasks[j].after)))
    return order
