"""``show 2``: a plan step's full result, asked by replying to the plan's message.  Pure.

A plan's checklist and final reply give each step one line (decision 43); a
reply "show 2" (the step's number there), "show write" (its name) or "show
#13" (its id) to either message answers with that step's story, as ``/why``
tells it, and its whole result.  Only a reply to a plan's message is read this
way: "show 2" anywhere else means what it meant before.
"""

from __future__ import annotations

import re

from promises.states import State
from promises.story import explain, result_text
from schemas.commands import RespondResult
from schemas.events import MessageReceived

from .view import ChatView

SHOW = re.compile(r"show(?:\s+(?P<which>#?[\w.-]+?))?[.!?]?", re.IGNORECASE)  # "show run." asks for run


def show_step(msg: MessageReceived, view: ChatView) -> RespondResult | None:
    """The answer to "show <n|name|#id>" replying to a plan's message; None for any other message."""
    asked = SHOW.fullmatch(msg.text.strip())
    plan = view.about(msg.reply_to) if asked is not None and msg.reply_to is not None else None
    if plan is None or len(plan.children or {}) < 2:
        return None
    steps = sorted(plan.children.items(), key=lambda kv: kv[1])  # (name, id) in the checklist's order
    listing = ", ".join(f"{n} {name} (#{pid})" for n, (name, pid) in enumerate(steps, 1))
    which = asked["which"]
    if which is None:
        return RespondResult(reply=f'Which step? {listing}. Reply "show 2" or "show {steps[-1][0]}".')
    pid = pick(which, steps)
    if pid is None:
        return RespondResult(reply=f"This plan has no step '{which}'. Its steps: {listing}.")
    return RespondResult(reply=full(view, pid))


def pick(which: str, steps: list[tuple[str, int]]) -> int | None:
    """A step by its name, its number in the plan, or its id (``#13``, or a number past the step count)."""
    ids = [pid for _, pid in steps]
    by_name = {name.lower(): pid for name, pid in steps}
    if which.startswith("#"):
        number = int(which[1:]) if which[1:].isdigit() else None
        return number if number in ids else None
    if which.lower() in by_name:
        return by_name[which.lower()]
    if which.isdigit():
        number = int(which)
        if 1 <= number <= len(steps):
            return ids[number - 1]
        return number if number in ids else None
    return None


def full(view: ChatView, pid: int) -> str:
    story = explain(view.events.get(pid, []))
    p = view.get(pid)
    result = result_text(p.result).strip() if p is not None and p.state == State.SUCCEEDED else ""
    return f"{story}\n\nResult:\n{result}" if result else story
