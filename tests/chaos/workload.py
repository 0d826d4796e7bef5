"""The chaos workload: mixed DAGs whose expected outcome is written in their names.

A task named ``doomed…`` fails for good (its retries run out); one named
``victim…`` depends on a doomed task and must end cancelled; every other task
must succeed, retries included (``flaky…`` fails once, then succeeds).  Some
chat messages are edited (``EDITED`` appended) or deleted soon after they are sent.
"""

from __future__ import annotations

import random

from schemas.commands import NewPromise as T


def expected_state(name: str | None) -> str:
    if name and name.startswith("doomed"):
        return "failed"
    if name and name.startswith("victim"):
        return "cancelled"
    return "succeeded"


def _sleep(rng: random.Random) -> dict:
    return {"seconds": round(rng.uniform(0.05, 0.4), 2)}


def chain(rng, k: int) -> list[T]:
    return [T(name=f"a{k}", type="sleep", input=_sleep(rng)), T(name=f"b{k}", type="echo", input=k, after=[f"a{k}"]),
            T(name=f"c{k}", type="sleep", input=_sleep(rng), after=[f"b{k}"])]


def fan(rng, k: int) -> list[T]:
    width = rng.randint(2, 4)
    legs = [T(name=f"leg{k}.{i}", type=rng.choice(["sleep", "noop", "echo"]), input=_sleep(rng)) for i in range(width)]
    return legs + [T(name=f"join{k}", type="echo", input=k, after=[t.name for t in legs])]


def flaky(rng, k: int) -> list[T]:
    return [T(name=f"flaky{k}", type="fail", input={"times": 1}, retries=2, backoff=0.2),
            T(name=f"after_flaky{k}", type="echo", input=k, after=[f"flaky{k}"])]


def doomed(rng, k: int) -> list[T]:
    return [T(name=f"doomed{k}", type="fail", input={"times": 9}, retries=1, backoff=0.1),
            T(name=f"victim{k}", type="echo", input=k, after=[f"doomed{k}"]),
            T(name=f"victim{k}.2", type="noop", after=[f"victim{k}"])]


SHAPES = [(chain, 4), (fan, 4), (flaky, 2), (doomed, 1)]  # (shape, weight)


def plans(rng: random.Random, n_promises: int) -> list[list[T]]:
    """Plans of 2-3 shapes each, ``n_promises`` tasks in all (the last plan may be cut short)."""
    shapes = [s for s, w in SHAPES for _ in range(w)]
    out: list[list[T]] = []
    total, k = 0, 0
    while total < n_promises:
        plan: list[T] = []
        for _ in range(rng.randint(1, 3)):
            k += 1
            shape = rng.choice(shapes)(rng, k)
            left = n_promises - total - len(plan)
            plan += shape if len(shape) <= left else [T(name=f"x{k}.{i}", type="noop") for i in range(left)]
        out.append(plan)
        total += len(plan)
    return [p for p in out if p]


def chat_text(rng: random.Random, n: int) -> str:
    return f"/do echo chaos message {n}"


EDITED = " (edited)"


def chat_change(rng: random.Random) -> str | None:
    """What the sender does to a message soon after sending it: edit it (1 in 5), delete it (1 in 10), or nothing."""
    roll = rng.random()
    return "edit" if roll < 0.2 else "delete" if roll < 0.3 else None
