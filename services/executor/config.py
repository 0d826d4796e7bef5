"""Executor settings read from the environment, and executor ids.

Environment variables:
- ``VALOR_ACK_WAIT``: seconds before unacknowledged work is redelivered (default 10).
- ``VALOR_SHELL_ALLOW``: comma-separated programs the ``shell`` task may run.
- ``VALOR_WRITE_WINDOW``: seconds attempts' writes are held to go out together (default 0.002; 0: at once).
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from collections.abc import Iterable

from valor.config import DEFAULT_SHELL_ALLOW

DEFAULT_ACK_WAIT = 10.0  # in_progress every third of it keeps long attempts; a crash costs this much
HEARTBEAT_INTERVAL = 2.0
# A pull request lingers this long; short so slots shared by several queues rotate
# quickly and so a stalled fetch costs at most this much latency.
FETCH_TIMEOUT = 1.0
STOP_GRACE = 10.0
DEFAULT_WRITE_WINDOW = 0.002  # see coalesce.py: a raft round saved per write outweighs 2 ms

# Executor ids are KV keys and queue names are subject tokens and consumer names.
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")


def ack_wait() -> float:
    return float(os.environ.get("VALOR_ACK_WAIT", DEFAULT_ACK_WAIT))


def write_window() -> float:
    return float(os.environ.get("VALOR_WRITE_WINDOW", DEFAULT_WRITE_WINDOW))


def shell_allowlist(configured: Iterable[str] = DEFAULT_SHELL_ALLOW) -> frozenset[str]:
    """``VALOR_SHELL_ALLOW`` when set (an operator's override), else valor.toml's ``shell.allow``."""
    raw = os.environ.get("VALOR_SHELL_ALLOW")
    if raw is None:
        return frozenset(configured)
    return frozenset(p.strip() for p in raw.split(",") if p.strip())


def is_token(name: str) -> bool:
    return bool(_TOKEN.match(name))


def default_executor_id() -> str:
    """Host and pid say where it runs; the suffix keeps pid 1 in two containers apart."""
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:40] or "host"
    return f"exec-{host}-{os.getpid()}-{secrets.token_hex(2)}"
