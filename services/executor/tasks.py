"""Built-in task types for demos, tests and benchmarks, and the default registry."""

from __future__ import annotations

import asyncio
from typing import Any

from .context import AttemptContext, Handler, TaskFailed
from .shell import run_shell


def _object(ctx: AttemptContext) -> dict[str, Any]:
    if ctx.input is None:
        return {}
    if not isinstance(ctx.input, dict):
        raise TaskFailed(f"{ctx.task} input must be an object, got {type(ctx.input).__name__}", retryable=False)
    return ctx.input


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return float(value.strip().removesuffix("s"))
        except ValueError:
            return None
    return None


async def noop(ctx: AttemptContext) -> None:
    return None


async def echo(ctx: AttemptContext) -> dict[str, Any]:
    return {"input": ctx.input, "deps": ctx.deps}


async def sleep(ctx: AttemptContext) -> dict[str, Any]:
    # "/do sleep 3" gives the text "3": a bare number is the seconds too.
    bare = _number(ctx.input)
    seconds = bare if bare is not None else _object(ctx).get("seconds", 0)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise TaskFailed("sleep input 'seconds' must be a non-negative number", retryable=False)
    step = min(1.0, max(0.1, seconds / 10))
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while (left := end - loop.time()) > 0:
        await ctx.progress(f"sleeping, {left:.1f}s left", 1 - left / seconds)
        await asyncio.sleep(min(step, left))
    return {"slept": seconds}


async def fail(ctx: AttemptContext) -> dict[str, Any]:
    spec = _object(ctx)
    times = spec.get("times", 1)
    if isinstance(times, bool) or not isinstance(times, int):
        raise TaskFailed("fail input 'times' must be an integer", retryable=False)
    if ctx.attempt <= times:
        raise TaskFailed(
            f"failing on purpose: attempt {ctx.attempt} of {times} planned failures",
            retryable=bool(spec.get("retryable", True)),
        )
    return {"attempts": ctx.attempt}


def builtin_handlers() -> dict[str, Handler]:
    return {"noop": noop, "echo": echo, "sleep": sleep, "fail": fail, "shell": run_shell}
