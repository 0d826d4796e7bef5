"""JSON log lines for every service, with secrets scrubbed.

One object per line: ``ts``, ``level``, ``service``, ``logger``, then either the
fields a module logged as a JSON object (``promise_id``, ``attempt``,
``chat_id`` ...) or ``msg``.  Values of secret-looking environment variables
(API keys, tokens, hashes, passwords, phone numbers) are replaced by ``***``
wherever they would appear, so a secret cannot leak through an error text.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time

SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|HASH|PHONE)", re.IGNORECASE)


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    # Short values would scrub ordinary words; real secrets are long.
    return sorted({v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= 6}, key=len, reverse=True)


def scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


EVENT_LINE = "valor_event_line"  # set on records whose message EventLog built with line()


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str, secrets: list[str] | None = None) -> None:
        super().__init__()
        self.service = service
        self.secrets = secret_values() if secrets is None else secrets
        self._fixed: dict[tuple[str, str], str] = {}  # (level, logger) -> their part of the header

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, EVENT_LINE, False) and not record.exc_info:
            # An EventLog line is already one JSON object: put the header in front of its fields
            # rather than decode and encode it again (two lines per attempt, every attempt).
            key = (record.levelname, record.name)
            if (fixed := self._fixed.get(key)) is None:
                fixed = self._fixed[key] = json.dumps({"level": record.levelname.lower(), "service": self.service,
                                                       "logger": record.name}, ensure_ascii=False)[1:-1]
            # The fields as line() spaced them.
            return scrub(f'{{"ts": "{_timestamp(record)}", {fixed}, {record.msg[1:]}', self.secrets)
        line: dict[str, object] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
        }
        message = record.getMessage()
        fields = None
        if message.startswith("{"):
            try:
                fields = json.loads(message)
            except ValueError:
                fields = None
        if isinstance(fields, dict):
            line.update(fields)
        else:
            line["msg"] = message
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return scrub(json.dumps(line, default=str, ensure_ascii=False), self.secrets)


def line(event: str, **fields: object) -> str:
    """One fact as compact JSON, the event name first: ``{"event":"attempt.started","promise_id":12,...}``."""
    return json.dumps({"event": event, **fields}, default=str, separators=(",", ":"), ensure_ascii=False)


_EVENT_LINE = {EVENT_LINE: True}


class EventLog:
    """What services log through: an event name and ids, never message texts or secrets."""

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)

    def debug(self, event: str, **fields: object) -> None:
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug(line(event, **fields), extra=_EVENT_LINE)

    def info(self, event: str, **fields: object) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            self.logger.info(line(event, **fields), extra=_EVENT_LINE)

    def warning(self, event: str, **fields: object) -> None:
        self.logger.warning(line(event, **fields), extra=_EVENT_LINE)


def setup(service: str, level: str | None = None) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level or os.environ.get("VALOR_LOG_LEVEL", "INFO"))
    # What the JSON lines never show, not gathered for every record (the logging HOWTO's "Optimization").
    logging._srcfile = None  # the caller's file, line and function: a walk up the stack per record
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
