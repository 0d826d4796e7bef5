"""The projection saved at one stream sequence, so a restart replays only the tail.

Pure: a projection in, bytes out, and back.  The bytes are one JSON header line
(readable with ``nats object get valor_snapshots scheduler | head -1``), then the
promises in creation order and the set that needs a decision, in msgpack (JSON
when a value is beyond msgpack's 64-bit integers, which the JSON log can hold),
compressed with zlib: the log's repetitive records shrink tenfold and more, and
fetching them is what a restart would otherwise wait for.  The indexes are not
stored: ``Projection.restored`` derives them again.

The header alone says whether a snapshot may be used: its format, the fold that
wrote it (a digest of the code that defines the state: after a change to the
fold or to the events a snapshot would hold a state the new code never builds)
and the log it folded (that stream's creation time and the last sequence in it).
"""

from __future__ import annotations

import gc
import hashlib
import zlib
from pathlib import Path

import msgspec

from schemas import events

from . import projection
from .projection import Projection, Promise, Schedule

FORMAT = 1
NAME = "scheduler"  # the object's name in the snapshot bucket

# Any edit to these files makes older snapshots unusable: one full replay, never a wrong state.
FOLD = hashlib.sha256(b"".join(Path(m.__file__ or "").read_bytes() for m in (projection, events))).hexdigest()[:16]


class SnapshotError(Exception):
    """A snapshot that cannot be used; the message says why."""


class Header(msgspec.Struct, frozen=True, kw_only=True):
    format: int
    fold: str = ""
    codec: str = "msgpack"  # of the body: msgpack | json
    stream_created: str = ""  # the folded log's creation time: a recreated stream is another log
    last_seq: int = 0
    max_id: int = 0
    applied: int = 0
    ignored: int = 0
    promises: int = 0
    taken_at: float = 0.0


class Body(msgspec.Struct, array_like=True):
    promises: list[Promise]
    needs_decision: list[int]
    schedules: list[Schedule] = []


_header_decoder = msgspec.json.Decoder(Header)
_encoders = {"msgpack": msgspec.msgpack.Encoder(), "json": msgspec.json.Encoder()}
_decoders = {"msgpack": msgspec.msgpack.Decoder(Body), "json": msgspec.json.Decoder(Body)}
MAX_HEADER = 4096


def freeze(state: Projection, stream_created: str, taken_at: float) -> tuple[Header, bytes]:
    """The projection as it is now, serialised: call it between two events (one consistent point)."""
    body = Body(list(state.promises.values()), sorted(state.needs_decision), list(state.schedules.values()))
    try:
        codec, data = "msgpack", _encoders["msgpack"].encode(body)
    except OverflowError:  # an integer past 64 bits in some input or result
        codec, data = "json", _encoders["json"].encode(body)
    header = Header(format=FORMAT, fold=FOLD, codec=codec, stream_created=stream_created, last_seq=state.last_seq,
                    max_id=state.max_id, applied=state.applied, ignored=state.ignored,
                    promises=len(state.promises), taken_at=taken_at)
    return header, data


def seal(header: Header, body: bytes) -> bytes:
    """The stored form.  It reads only bytes, so it may run in a thread (zlib lets go of the GIL)."""
    return msgspec.json.encode(header) + b"\n" + zlib.compress(body, 1)


def encode(state: Projection, stream_created: str, taken_at: float) -> bytes:
    return seal(*freeze(state, stream_created, taken_at))


def read_header(data: bytes) -> Header:
    """The header of a snapshot this code can restore, or SnapshotError saying why not."""
    end = data.find(b"\n", 0, MAX_HEADER)
    if end < 0:
        raise SnapshotError("no header line: not a Valor snapshot")
    try:
        header = _header_decoder.decode(data[:end])
    except msgspec.DecodeError as exc:
        raise SnapshotError(f"unreadable header: {exc}") from None
    if header.format != FORMAT:
        raise SnapshotError(f"format {header.format}, this scheduler reads format {FORMAT}")
    if header.fold != FOLD:
        raise SnapshotError(f"written by another version of the fold ({header.fold}, this one is {FOLD})")
    if header.codec not in _decoders:
        raise SnapshotError(f"unknown codec {header.codec!r}")
    return header


def unusable(header: Header, stream_created: str, first_seq: int, last_seq: int) -> str | None:
    """Why the log as it stands now cannot continue from this snapshot, or None."""
    if header.stream_created != stream_created:
        return f"it folded a stream created at {header.stream_created or '?'}, this one was created at {stream_created}"
    if header.last_seq > last_seq:
        return f"it is at seq {header.last_seq}, past the end of the log (seq {last_seq}): the log was cut"
    if first_seq > header.last_seq + 1:
        return f"the log now starts at seq {first_seq}: events after the snapshot's seq {header.last_seq} are gone"
    return None


def restore(data: bytes) -> tuple[Header, Projection]:
    """The projection saved in ``data`` with its indexes rebuilt, or SnapshotError."""
    header = read_header(data)
    body_at = data.index(b"\n") + 1
    # Hundreds of thousands of new objects: the cyclic GC would walk them again and
    # again while they are made (3x slower), and none of them forms a cycle.
    enabled = gc.isenabled()
    gc.disable()
    try:
        body = _decoders[header.codec].decode(zlib.decompress(memoryview(data)[body_at:]))
        if len(body.promises) != header.promises:
            raise SnapshotError(f"{len(body.promises)} promises, the header says {header.promises}")
        state = Projection.restored(body.promises, body.needs_decision, max_id=header.max_id,
                                    last_seq=header.last_seq, applied=header.applied, ignored=header.ignored,
                                    schedules=body.schedules)
    except (msgspec.DecodeError, zlib.error) as exc:
        raise SnapshotError(f"unreadable body: {exc}") from None
    finally:
        if enabled:
            gc.enable()
    return header, state


def due(events_since: int, seconds_since: float, every: int, min_interval: float) -> bool:
    """Whether the leader should take a snapshot now: enough new events, and not too soon."""
    return every > 0 and events_since >= every and seconds_since >= min_interval
