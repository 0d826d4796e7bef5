"""Keeping replies honest, and naming promises by their real ids once they exist.

The agent's reply is written before its promises exist: the scheduler creates
them from the respond result and records ``spawned`` (plan name -> id).  So a
reply refers to tasks by their plan names, and whoever sends it after
``spawned`` (the notifier) calls ``reply_with_ids`` to add the real ids.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from schemas.commands import NewPromise, RespondCommand

# Words that announce work: a reply that says them must be backed by a promise.
ANNOUNCES_WORK = re.compile(
    r"\b(i['’]ll|i will|i am going to|i['’]m going to|i['’]m starting|i am starting|i['’]ve started|"
    r"i have started|i['’]m on it|^\s*on it|starting (?:on|now|to|with)|let me (?:start|get started|do|work)|"
    r"working on (?:it|that|this)|i['’]ll get (?:on|started))\b",
    re.IGNORECASE,
)
NOTHING_STARTED = "I haven't started anything yet (no task was created): "


def announces_work(text: str) -> bool:
    return bool(ANNOUNCES_WORK.search(text))


def honest_reply(text: str, promises: Sequence[NewPromise], commands: Sequence[RespondCommand] = ()) -> str:
    """A reply that announces work when nothing was promised or commanded this turn is qualified."""
    text = text.strip()
    if promises or commands or not announces_work(text):
        return text
    return NOTHING_STARTED + text


def reply_with_ids(reply: str, children: Mapping[str, int], promises: Sequence[NewPromise] = ()) -> str:
    """The reply plus one line naming each spawned promise by its id.

    ``children`` is the ``spawned`` event's name -> id (an unnamed task is keyed
    by its position, "0", "1", ...); ``promises`` is the respond result's list,
    used for titles and dependencies when given.
    ``Promised: #12 setup, #13 write (after #12), #14 run (after #13)``.
    """
    if not children:
        return reply
    parts = []
    tasks = {(t.name or str(i)): t for i, t in enumerate(promises)}
    for key, pid in sorted(children.items(), key=lambda kv: kv[1]):
        task = tasks.get(key)
        name = key if task is None or task.name else task.title or task.type
        after = [f"#{children[a]}" for a in (task.after if task else []) if a in children]
        after += [f"#{d}" for d in (task.depends_on if task else [])]
        parts.append(f"#{pid} {name}" + (f" (after {', '.join(after)})" if after else ""))
    line = "Promised: " + ", ".join(parts)
    return f"{reply}\n{line}" if reply else line
