"""One log line per fact, as compact JSON: ``grep '"promise":12'`` finds a promise's notices.

Never message texts or credentials: ids, counts and short error texts only.
"""

from __future__ import annotations

import json
import logging

log = logging.getLogger("valor.notifier")


def line(event: str, **fields: object) -> str:
    return json.dumps({"event": event, **fields}, default=str, separators=(",", ":"), ensure_ascii=False)


def debug(event: str, **fields: object) -> None:
    if log.isEnabledFor(logging.DEBUG):
        log.debug(line(event, **fields))


def info(event: str, **fields: object) -> None:
    log.info(line(event, **fields))


def warning(event: str, **fields: object) -> None:
    log.warning(line(event, **fields))
