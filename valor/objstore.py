"""Whole objects in a JetStream object store, replaced without the right to purge.

nats-py's ``ObjectStore.put`` removes the chunks of the copy it replaces with a
stream purge, an API no service user may call (decision 25), and leaves orphan
chunks behind when it dies half-way.  Here an object alternates between two
chunk subjects (``<name>-a`` and ``<name>-b``): the first chunk of a new copy
carries ``Nats-Rollup: sub``, which drops the copy before last from that
subject, and the object's meta message (a rollup too) points at the new copy
only once all its chunks are stored.  So the current copy stays whole until the
next one is complete, a bucket holds at most two copies of an object, and the
result is an ordinary object (``nats object get`` reads it).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from datetime import UTC, datetime

from nats.js import JetStreamContext, api
from nats.js.errors import BadObjectMetaError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

CHUNK = 128 * 1024  # the object store's usual chunk: far below any max_payload
WINDOW = 16  # chunks awaiting their ack: other publishes on the connection never wait behind many MB
ROLLUP = {"Nats-Rollup": "sub"}


class ObjectCorrupt(Exception):
    """The stored chunks do not add up to what the object's meta says."""


def _stream(bucket: str) -> str:
    return f"OBJ_{bucket}"


def _chunks(bucket: str, nuid: str) -> str:
    return f"$O.{bucket}.C.{nuid}"


async def info(js: JetStreamContext, bucket: str, name: str) -> api.ObjectInfo | None:
    """The object's meta, None when there is none (BadObjectMetaError when it is garbage)."""
    try:
        return await ObjectStore(bucket, _stream(bucket), js).get_info(name)
    except ObjectNotFoundError:
        return None


async def put(js: JetStreamContext, bucket: str, name: str, data: bytes, chunk: int = CHUNK) -> api.ObjectInfo:
    """Store ``data`` as the object ``name``; the previous copy stays readable until this returns."""
    try:
        current = await info(js, bucket, name)
    except BadObjectMetaError:  # unreadable meta: whatever it pointed at is lost anyway
        current = None
    slot = f"{name}-b" if current is not None and current.nuid == f"{name}-a" else f"{name}-a"
    subject = _chunks(bucket, slot)
    pending: list[asyncio.Future] = []
    count = 0
    for start in range(0, len(data), chunk):
        pending.append(await js.publish_async(subject, data[start:start + chunk], headers=None if count else ROLLUP))
        count += 1
        if len(pending) >= WINDOW:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode()
    meta = api.ObjectInfo(name=name, bucket=bucket, nuid=slot, size=len(data), chunks=count,
                          digest=f"SHA-256={digest}", mtime=datetime.now(UTC).isoformat(),
                          options=api.ObjectMetaOptions(max_chunk_size=chunk))
    meta_subject = f"$O.{bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"
    await js.publish(meta_subject, json.dumps(meta.as_dict()).encode(), headers=ROLLUP)
    return meta


async def get(js: JetStreamContext, bucket: str, name: str, timeout: float = 60.0) -> bytes | None:
    """The object's bytes, None when there is no such object, ObjectCorrupt when they do not check out.

    A copy replaced twice while it is being read comes out corrupt, never wrong.
    """
    meta = await info(js, bucket, name)
    if meta is None:
        return None
    if not meta.size:
        return b""
    parts: list[bytes] = []
    done = asyncio.get_running_loop().create_future()

    async def on_chunk(msg) -> None:
        parts.append(msg.data)
        if msg.metadata.num_pending == 0 and not done.done():
            done.set_result(None)

    sub = await js.subscribe(_chunks(bucket, meta.nuid), stream=_stream(bucket), cb=on_chunk, ordered_consumer=True)
    try:
        await asyncio.wait_for(done, timeout)
    finally:
        await sub.unsubscribe()
    data = b"".join(parts)
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode()
    if len(parts) != meta.chunks or len(data) != meta.size or meta.digest != f"SHA-256={digest}":
        raise ObjectCorrupt(f"{name}: {len(parts)} chunks, {len(data)} bytes, digest {digest}; "
                            f"its meta says {meta.chunks}, {meta.size}, {meta.digest}")
    return data
