"""The event loop every service runs on: uvloop, unless ``VALOR_UVLOOP=0``.

Each promise costs a dozen NATS messages across the services, and asyncio's
pure-Python transports and timers are a good part of that cost; uvloop does the
same work in C (about a tenth less CPU per promise in ``make bench``).  The
switch exists to rule the loop out when chasing a bug.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    if os.environ.get("VALOR_UVLOOP", "1") != "0":
        try:
            import uvloop
        except ImportError:  # an install without it still runs, only slower
            pass
        else:
            return uvloop.run(main)
    return asyncio.run(main)
