"""``valor top``: the status view, refreshed in place until Ctrl-C.

The log is tailed once (``LiveLog``) instead of replayed on every refresh;
streams, executors and the lease are asked again each time, as ``valor status`` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from valor import render
from valor.client import ValorClient
from valor.web.live import LiveLog

CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen


def screen(status: Mapping[str, Any], live: LiveLog, now: float, clock: str, recent: int = 10) -> str:
    """One frame: the status text, then the promises that moved last."""
    out = [f"valor top  {clock}  (Ctrl-C quits)", render.status_text(status), ""]
    ids = live.recent(recent)
    if ids:
        out.append("recent")
        promises = [live.state.promises[i] for i in ids if i in live.state.promises]
        out += ["  " + line for line in render.list_text(promises, now).splitlines()]
    return "\n".join(out)


async def watch(client: ValorClient, show: Callable[[str], None], interval: float, iterations: int | None,
                clear: bool, clock: Callable[[], tuple[float, str]]) -> None:
    from valor.cli import gather_status  # cli imports this module lazily; avoid the cycle

    live = await LiveLog(client.js).start()
    try:
        frame = 0
        while True:
            status = await gather_status(client, live.state)
            now, text_clock = clock()
            text = screen(status, live, now, text_clock)
            show((CLEAR if clear else ("" if frame == 0 else "\n")) + text)
            frame += 1
            if iterations is not None and frame >= iterations:
                return
            await asyncio.sleep(interval)
    finally:
        await live.stop()
