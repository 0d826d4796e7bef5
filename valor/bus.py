"""The one way services talk to NATS: connect, declare streams, publish, dead-letter.

Every service and the CLI go through here so that connection options,
message-id headers and dead-lettering behave the same everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TypeVar

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import BadRequestError, NotFoundError

from schemas import subjects
from schemas.events import EVENT_NAMES, encode
from schemas.streams import bucket_configs, object_store_configs, stream_configs
from valor import context

log = logging.getLogger("valor.bus")

T = TypeVar("T")


def _not_ssl_eof_noise(record: logging.LogRecord) -> bool:
    # nats-py's protocol asks to keep the transport open at EOF, which asyncio cannot do over TLS and says so
    # at every closed TLS connection (each CLI command): harmless, and nothing an operator can act on.
    return "eof_received() has no effect when using ssl" not in record.getMessage()


logging.getLogger("asyncio").addFilter(_not_ssl_eof_noise)

DEFAULT_URL = "nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224"

MSG_ID = "Nats-Msg-Id"
EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
# With this, the expected sequence is checked on another subject than the one written.
EXPECTED_LAST_SUBJECT_SEQ_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
WRONG_LAST_SEQUENCE = 10071  # JetStream's error code when such an expectation fails
REASON = "Valor-Reason"
ORIGIN_SUBJECT = "Valor-Origin-Subject"
ORIGIN_STREAM = "Valor-Origin-Stream"
ORIGIN_SEQ = "Valor-Origin-Seq"
TRUNCATED = "Valor-Truncated"  # the original size, when the DLQ copy had to be cut to fit


def nats_url(environ: Mapping[str, str] | None = None) -> str:
    """``VALOR_NATS_URL``, else the URL of the cluster ``make up`` recorded (valor/context.py), else the default."""
    env = os.environ if environ is None else environ
    if env.get("VALOR_NATS_URL"):
        return env["VALOR_NATS_URL"]
    recorded = context.read(env)
    return recorded.url if recorded else DEFAULT_URL


def replicas() -> int:
    return int(os.environ.get("VALOR_REPLICAS", "1"))


CLI_USER = "cli"


@dataclasses.dataclass(frozen=True)
class Login:
    user: str
    password: str
    origin: str  # where it came from, for an error message: never the password itself


def login(environ: Mapping[str, str] | None = None) -> Login | None:
    """The NATS user and password to connect with, or None for a server without users.

    ``VALOR_NATS_USER`` with ``VALOR_NATS_PASSWORD`` or ``VALOR_NATS_PASSWORD_FILE``
    (supervisord gives each service its own).  Else the ``cli`` user's password
    file in ``$VALOR_SECRETS`` (the Makefile's cluster targets set it to their
    checkout's ``var/secrets``).  Else the context the last ``make up`` wrote
    (valor/context.py), so the ``valor`` command works from any directory.  A
    server without users ignores credentials, so tests need nothing.
    """
    env = os.environ if environ is None else environ
    user = env.get("VALOR_NATS_USER", "").strip()
    if user:
        if env.get("VALOR_NATS_PASSWORD") is not None:
            return Login(user, env["VALOR_NATS_PASSWORD"], "VALOR_NATS_PASSWORD")
        if env.get("VALOR_NATS_PASSWORD_FILE"):
            return Login(user, _read_password(Path(env["VALOR_NATS_PASSWORD_FILE"]), "VALOR_NATS_PASSWORD_FILE"),
                         f"VALOR_NATS_PASSWORD_FILE={env['VALOR_NATS_PASSWORD_FILE']}")
        return Login(user, "", "VALOR_NATS_USER without a password")
    if env.get("VALOR_SECRETS"):
        cli = Path(env["VALOR_SECRETS"]) / f"nats-{CLI_USER}.password"
        return Login(CLI_USER, cli.read_text().strip(), str(cli)) if cli.is_file() else None
    recorded = context.read(env)
    if recorded is None:
        return None
    where = f"{recorded.password_file} (named by {recorded.path})"
    return Login(recorded.user, _read_password(Path(recorded.password_file), where), where)


def _read_password(path: Path, origin: str) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise context.ContextError(f"cannot read the NATS password file {origin}: {exc.strerror or exc}; "
                                   "run `make up` to write it") from None


def credentials(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``login`` as nats-py's connect options: {} when there is none."""
    found = login(environ)
    return {"user": found.user, "password": found.password} if found else {}


def tls_context(environ: Mapping[str, str] | None = None) -> ssl.SSLContext | None:
    """The TLS settings to connect with, or None for nats-py's own (system CAs for a ``tls://`` URL).

    ``VALOR_NATS_CA`` names the private CA file that signed the servers'
    certificates (deploy/certs.py); ``VALOR_NATS_CERT`` with ``VALOR_NATS_KEY``
    add a client certificate for servers that verify clients.  Without
    ``VALOR_NATS_URL``, the CA the context recorded (make up NATS_TLS=1) goes
    with the URL it recorded.  Only file names appear in an error, never a key.
    """
    env = os.environ if environ is None else environ
    ca = env.get("VALOR_NATS_CA", "").strip()
    if not ca and not env.get("VALOR_NATS_URL"):
        recorded = context.read(env)
        ca = recorded.ca if recorded else ""
    cert, key = env.get("VALOR_NATS_CERT", "").strip(), env.get("VALOR_NATS_KEY", "").strip()
    if bool(cert) != bool(key):
        raise context.ContextError("VALOR_NATS_CERT and VALOR_NATS_KEY go together: set both or neither")
    if not ca and not cert:
        return None
    try:
        tls = ssl.create_default_context(cafile=ca or None)
        if cert:
            tls.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        files = ", ".join(f for f in (ca, cert, key) if f)
        raise context.ContextError(f"cannot load the NATS TLS files ({files}): {exc}") from None
    return tls


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
        # A node cut off silently (a partition: no RST) leaves the TCP connection open and every request timing
        # out; only unanswered pings declare it stale and move to another node.  nats-py's 120 s default made
        # that 354 s under make chaos-net (decision 71); 5 s x 2 outstanding: 15-20 s.
        ping_interval=5,
        max_outstanding_pings=2,
    )
    if "user" not in options and "user_credentials" not in options and "nkeys_seed" not in options:
        defaults.update(credentials())
    if "tls" not in options and (tls := tls_context()) is not None:
        defaults["tls"] = tls
    defaults.update(options)
    return await nats.connect(servers=servers, **defaults)


# The JetStream API answers these while a node restarts or a stream elects a leader.
TRANSIENT = (TimeoutError, nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError,
             nats.js.errors.NoStreamResponseError)


class NoQuorum(Exception):
    """JetStream refuses writes because most of the cluster's nodes are gone."""

    def __init__(self, up: int, total: int) -> None:
        super().__init__(f"the cluster has no quorum: {up} of {total} nodes")
        self.up, self.total = up, total


JETSTREAM_UNAVAILABLE = 10008  # "JetStream system temporarily unavailable": no meta leader
# "duplicate message id is in process": a retry met its own first publish, still waiting for a quorum.
MSG_ID_IN_PROCESS = 10158


def passing_refusal(exc: nats.js.errors.APIError) -> bool:
    """A JetStream refusal that a retry of the same publish can outlive: a 503, or the same
    message id still being stored by an earlier try (seen while two of three nodes were gone)."""
    return exc.code == 503 or exc.err_code in (JETSTREAM_UNAVAILABLE, MSG_ID_IN_PROCESS)


async def nodes_up(nc: Client, timeout: float = 0.5) -> tuple[int, int]:
    """How many of the cluster's nodes (the URLs given and those the server told of) accept a
    connection, and how many there are."""
    nodes = {(s.hostname, s.port or 4222) for s in nc.servers if s.hostname}

    async def up(host: str, port: int) -> bool:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, TimeoutError):
            return False
        writer.close()
        return True

    answers = await asyncio.gather(*(up(h, p) for h, p in nodes))
    return sum(answers), len(nodes)


async def check_quorum(nc: Client) -> None:
    """Raise NoQuorum when JetStream says it is unavailable and at most half the nodes are up.

    Called after a write failed for a reason that looks passing (a timeout, a 503): one
    node lost means elections, worth waiting for; two of three lost means no write can
    succeed until a node returns, which the caller should be told at once.
    """
    try:
        answer = await nc.request("$JS.API.INFO", b"", timeout=1.0)
        error = (json.loads(answer.data) or {}).get("error") or {}
        unavailable = error.get("err_code") == JETSTREAM_UNAVAILABLE or error.get("code") == 503
    except (TimeoutError, nats.errors.Error, ValueError):  # no answer at all: count the nodes
        unavailable = True
    if not unavailable:
        return
    up, total = await nodes_up(nc)
    if total > 1 and up * 2 <= total:
        raise NoQuorum(up, total)


async def stop_reading(js: JetStreamContext, sub, stream: str) -> None:
    """Unsubscribe a one-off ordered reader and delete its consumer now.

    Left to the server, an ephemeral consumer lingers 5 s after its reader went: each
    `valor show`, `/why` and chat message makes one, and the hundreds a busy chat or script
    left on PROMISES and CHAT slowed every listing of their consumers (`valor status`: p50
    4.5 -> 12.6 ms with 200 of them on the shipped stack).  A delete that fails (a node
    away) leaves the server's linger to do it.
    """
    name = getattr(sub, "_consumer", None)  # nats-py keeps the ordered consumer's current name here
    await sub.unsubscribe()
    if name:
        with contextlib.suppress(Exception):
            await js.delete_consumer(stream, name)


# Starting services wait this long for a cluster that is slow or electing leaders.
START_PATIENCE = 60.0


async def patiently(what: str, call: Callable[[], Awaitable[T]], patience: float = START_PATIENCE,
                    first_delay: float = 0.25, max_delay: float = 2.0) -> T:
    """``call()``, tried again on JetStream's transient answers (a timeout, no responders, 503)
    with a growing delay for up to ``patience`` seconds, then the error goes up.

    A service meeting a slow or electing cluster while it starts (creating its consumers,
    its first heartbeat) waits instead of exiting: supervisord counts quick exits and
    gives up after a few, and `make up` would have called a dying service healthy.
    """
    deadline = time.monotonic() + patience
    delay = first_delay
    while True:
        try:
            return await call()
        except TRANSIENT as exc:
            if time.monotonic() >= deadline:
                raise
            log.warning("%s: not ready yet (%s: %s); trying again in %.2gs", what, type(exc).__name__, exc, delay)
            await asyncio.sleep(delay)
            delay = min(max_delay, delay * 2)


async def ensure_streams(js: JetStreamContext, n_replicas: int | None = None, patience: float = START_PATIENCE) -> None:
    """Create missing streams and buckets; never shrink or rewrite existing ones.

    A service starting while a node restarts keeps trying for ``patience``
    seconds instead of exiting (a supervisor gives up after a few quick exits).
    """
    n = n_replicas or replicas()
    await patiently("streams", lambda: _ensure(js, n), patience, first_delay=1.0, max_delay=1.0)


async def _ensure(js: JetStreamContext, n: int) -> None:
    for config in stream_configs(replicas=n):
        try:
            info = await js.stream_info(config.name)
            if config.allow_atomic and not info.config.allow_atomic:  # a stream from before atomic batches
                await js.update_stream(dataclasses.replace(info.config, allow_atomic=True))
        except NotFoundError:
            try:
                await js.add_stream(config)
            except BadRequestError as exc:  # another service won the race
                if "already in use" not in str(exc):
                    raise
    for kv in bucket_configs(replicas=n):
        try:
            await js.key_value(kv.bucket)
        except NotFoundError:
            await js.create_key_value(kv)
    for obj in object_store_configs(replicas=n):
        try:
            await js.object_store(obj.bucket)
        except NotFoundError:
            await js.create_object_store(obj.bucket, obj)


BATCH_LIMIT = 1000  # the server's cap on messages in one atomic batch


class DuplicateInBatch(Exception):
    """An atomic batch carried a message id the stream has already stored."""


async def publish_atomic(nc: Client, items: list[tuple[str, bytes, dict[str, str]]], timeout: float = 10.0) -> PubAck:
    """Store ``items`` on one stream all or none (JetStream atomic batch publish).

    Every message but the last goes without a reply; the last carries the
    commit and gets the batch's ack, or the error that refused all of it.
    """
    batch_id = nc.new_inbox().rsplit(".", 1)[-1]
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, max_msgs=1)
    try:
        for i, (subject, payload, headers) in enumerate(items, 1):
            h = {**headers, "Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(i)}
            if i == len(items):
                h["Nats-Batch-Commit"] = "1"
            await nc.publish(subject, payload, reply=inbox if i == len(items) else "", headers=h)
        msg = await sub.next_msg(timeout=timeout)
    finally:
        await sub.unsubscribe()
    resp = json.loads(msg.data)
    if "error" in resp:
        if resp["error"].get("err_code") == 10201:
            raise DuplicateInBatch(resp["error"].get("description", ""))
        raise nats.js.errors.APIError.from_error(resp["error"])
    return PubAck(stream=resp["stream"], seq=resp["seq"])


def stream_sequence(msg: Msg) -> int:
    """The stream sequence of a JetStream delivery, read straight off its reply subject.

    ``msg.metadata`` parses every field of the subject into objects; tailing the
    log needs only this one, four times per promise.  Both reply formats keep the
    stream sequence at a fixed place: ``$JS.ACK.<stream>.<consumer>.<delivered>.
    <sseq>...`` (9 tokens), or with domain and account hash in front (12 tokens).
    """
    tokens = (msg.reply or "").split(".")
    if tokens[0] == "$JS" and len(tokens) == 9:
        return int(tokens[5])
    if tokens[0] == "$JS" and len(tokens) >= 11:
        return int(tokens[7])
    return msg.metadata.sequence.stream  # raises the usual error for a non-JetStream message


def event_subject(event: msgspec.Struct) -> str:
    return subjects.promise(event.id, EVENT_NAMES[type(event)])  # type: ignore[attr-defined]


async def publish_event(
    js: JetStreamContext,
    event: msgspec.Struct,
    msg_id: str,
    expect_new_subject: bool = False,
    timeout: float | None = None,
    unless: str | None = None,
) -> PubAck:
    """Store one event; ``unless`` names a subject that must still be empty (else JetStream
    refuses the write with ``WRONG_LAST_SEQUENCE``), e.g. the promise's ``cancelled``."""
    headers = {MSG_ID: msg_id}
    if expect_new_subject:
        headers[EXPECTED_LAST_SUBJECT_SEQ] = "0"
    elif unless is not None:
        headers[EXPECTED_LAST_SUBJECT_SEQ] = "0"
        headers[EXPECTED_LAST_SUBJECT_SEQ_SUBJECT] = unless
    return await js.publish(event_subject(event), encode(event), headers=headers, timeout=timeout)


async def dead_letter(js: JetStreamContext, msg: Msg, origin: str, reason: str) -> None:
    """Park an unusable message with why and where it came from; the caller then acks it.

    A message near the size limit cannot be copied whole beside the headers: the
    copy is cut to fit and says so, rather than failing and coming back forever.
    """
    headers = {REASON: reason[:1000], ORIGIN_SUBJECT: msg.subject}
    try:
        meta = msg.metadata
        headers[ORIGIN_STREAM] = meta.stream
        headers[ORIGIN_SEQ] = str(meta.sequence.stream)
        headers[MSG_ID] = f"dlq:{meta.stream}:{meta.sequence.stream}"
    except Exception:  # a core NATS message has no JetStream metadata
        pass
    data = msg.data or b""
    limit = getattr(getattr(js, "_nc", None), "max_payload", 0) or 1024 * 1024
    room = limit - sum(len(k) + len(v.encode()) + 4 for k, v in headers.items()) - 1024
    if len(data) > room:
        headers[TRUNCATED] = str(len(data))
        data = data[:max(0, room)]
    log.warning("dead-lettered %s: %s", msg.subject, reason)
    await js.publish(subjects.dead_letter(origin), data, headers=headers)
