"""The one way services talk to NATS: connect, declare streams, publish, dead-letter.

Every service and the CLI go through here so that connection options,
message-id headers and dead-lettering behave the same everywhere.
"""

from __future__ import annotations

import logging
import os

import msgspec
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import BadRequestError, NotFoundError

from schemas import subjects
from schemas.events import EVENT_NAMES, encode
from schemas.streams import bucket_configs, stream_configs

log = logging.getLogger("valor.bus")

DEFAULT_URL = "nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224"

MSG_ID = "Nats-Msg-Id"
EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
REASON = "Valor-Reason"
ORIGIN_SUBJECT = "Valor-Origin-Subject"
ORIGIN_STREAM = "Valor-Origin-Stream"
ORIGIN_SEQ = "Valor-Origin-Seq"


def nats_url() -> str:
    return os.environ.get("VALOR_NATS_URL", DEFAULT_URL)


def replicas() -> int:
    return int(os.environ.get("VALOR_REPLICAS", "1"))


async def connect(url: str | None = None, name: str = "valor", **options) -> Client:
    servers = [s.strip() for s in (url or nats_url()).split(",") if s.strip()]
    async def on_error(exc: Exception) -> None:
        # One line, not nats-py's traceback per reconnect attempt.
        log.warning("nats: %s: %s", type(exc).__name__, exc)

    async def on_disconnected() -> None:
        log.info("nats: disconnected")

    async def on_reconnected() -> None:
        log.info("nats: reconnected")

    defaults = dict(
        name=name,
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
        max_reconnect_attempts=-1,  # services outlive node restarts
        reconnect_time_wait=0.5,
        connect_timeout=2,
        allow_reconnect=True,
    )
    defaults.update(options)
    return await nats.connect(servers=servers, **defaults)


async def ensure_streams(js: JetStreamContext, n_replicas: int | None = None) -> None:
    """Create missing streams and buckets; never shrink or rewrite existing ones."""
    n = n_replicas or replicas()
    for config in stream_configs(replicas=n):
        try:
            await js.stream_info(config.name)
        except NotFoundError:
            try:
                await js.add_stream(config)
            except BadRequestError as exc:  # another service won the race
                if "already in use" not in str(exc):
                    raise
    for kv in bucket_configs(replicas=n):
        try:
            await js.key_value(kv.bucket)
        except (NotFoundError, Exception):
            await js.create_key_value(kv)


def event_subject(event: msgspec.Struct) -> str:
    return subjects.promise(event.id, EVENT_NAMES[type(event)])  # type: ignore[attr-defined]


async def publish_event(
    js: JetStreamContext,
    event: msgspec.Struct,
    msg_id: str,
    expect_new_subject: bool = False,
    timeout: float | None = None,
) -> PubAck:
    headers = {MSG_ID: msg_id}
    if expect_new_subject:
        headers[EXPECTED_LAST_SUBJECT_SEQ] = "0"
    return await js.publish(event_subject(event), encode(event), headers=headers, timeout=timeout)


async def dead_letter(js: JetStreamContext, msg: Msg, origin: str, reason: str) -> None:
    """Park an unusable message with why and where it came from; the caller then acks it."""
    headers = {REASON: reason[:1000], ORIGIN_SUBJECT: msg.subject}
    try:
        meta = msg.metadata
        headers[ORIGIN_STREAM] = meta.stream
        headers[ORIGIN_SEQ] = str(meta.sequence.stream)
        headers[MSG_ID] = f"dlq:{meta.stream}:{meta.sequence.stream}"
    except Exception:  # a core NATS message has no JetStream metadata
        pass
    log.warning("dead-lettered %s: %s", msg.subject, reason)
    await js.publish(subjects.dead_letter(origin), msg.data or b"", headers=headers)
