"""``valor top``: the status view, refreshed in place until Ctrl-C.

Like ``valor web`` it reads through the schedulers' served read model (decision
48): the status and the promises shown are asked each refresh, and the log is
followed from its end only to learn which promises moved.  With no scheduler
answering when it starts, it folds the whole log once and answers from that
fold (slower to start, as the CLI's own fallback is).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from services.scheduler.projection import Promise
from services.scheduler.readmodel import PromisesQuery
from valor import render
from valor.client import ValorClient
from valor.web.live import LiveLog, follow

CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen
RECENT = 10


def screen(status: Mapping[str, Any], recent: Sequence[Promise], now: float, clock: str) -> str:
    """One frame: the status text, then the promises that moved last."""
    out = [f"valor top  {clock}  (Ctrl-C quits)", render.status_text(status), ""]
    if recent:
        out.append("recent")
        out += ["  " + line for line in render.list_text(list(recent), now).splitlines()]
    return "\n".join(out)


async def recent(client: ValorClient, live: LiveLog, n: int = RECENT) -> list[Promise]:
    """The ``n`` promises that moved last, most recent first; until ``n`` have moved, the newest fill in."""
    ids = live.recent(n)
    if live.fold:
        return [live.state.promises[i] for i in ids if i in live.state.promises]
    moved = {p.id: p for p in (await client.read(PromisesQuery(ids=ids))).promises} if ids else {}
    out = [moved[i] for i in ids if i in moved]
    if len(out) < n:  # just started: nothing (or little) moved since
        newest = reversed((await client.read(PromisesQuery(limit=n))).promises)  # answered oldest first
        out += [p for p in newest if p.id not in moved][: n - len(out)]
    return out


async def watch(client: ValorClient, show: Callable[[str], None], interval: float, iterations: int | None,
                clear: bool, clock: Callable[[], tuple[float, str]]) -> None:
    live = await follow(client.nc, who="top")
    try:
        frame = 0
        while True:
            status = await live.status(client)
            now, text_clock = clock()
            text = screen(status, await recent(client, live), now, text_clock)
            show((CLEAR if clear else ("" if frame == 0 else "\n")) + text)
            frame += 1
            if iterations is not None and frame >= iterations:
                return
            await asyncio.sleep(interval)
    finally:
        await live.stop()
