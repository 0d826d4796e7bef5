"""One log line per fact, as compact JSON, so ``grep '"promise_id":12'`` finds a promise's story.

Only ids, names and short error texts are logged: never inputs, results or environment.
"""

from __future__ import annotations

import json
import logging

log = logging.getLogger("valor.executor")


def line(event: str, **fields: object) -> str:
    return json.dumps({"event": event, **fields}, default=str, separators=(",", ":"))


def info(event: str, **fields: object) -> None:
    log.info(line(event, **fields))


def warning(event: str, **fields: object) -> None:
    log.warning(line(event, **fields))
