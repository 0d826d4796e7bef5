"""One active scheduler: a lease in a KV bucket whose TTL is the lease length.

The holder renews with a compare-and-set on the key's revision; a standby
creates the key once it is gone.  Decision 13, made fast by decision 65:

- The holder acts only while ``still_ours``: less than ``SAFE_SHARE`` of the
  TTL has passed, on its own monotonic clock, since it *sent* its last renewal
  that succeeded.  The server counts the TTL from when it stored that renewal,
  later, so the holder stops before anyone else could have the key.
- Renewals are frequent (``RENEW_SHARE`` of the TTL) and each request is
  bounded (``REQUEST_TIMEOUT``): a request stuck on a dead node's connection
  must not eat the lease; the next one goes out on the reconnected connection.
- A standby watches the key.  It creates it at once when the key is deleted
  (a clean step-down), when the TTL has passed since it saw the last renewal,
  or when the holder's process is gone: every holder answers requests on its
  ``alive_subject``, and NATS answering "no responders" there for ``GONE_AFTER``
  seconds means its connection closed (kill -9, crash), which is not the
  same as a holder that is slow or partitioned (those time out instead, and
  only the TTL frees their lease).  Then the standby deletes the key by
  compare-and-set on the revision it saw, so a holder that renewed meanwhile
  keeps it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from schemas.subjects import LEASE_KEY, lease_alive

log = logging.getLogger("valor.scheduler.lease")

# Share of the TTL the holder may act for after sending its last good renewal: the
# rest absorbs the delay until the server stored it and clocks running at different rates.
SAFE_SHARE = 0.8
# Renew this often (as a share of the TTL): several tries fit before SAFE_SHARE runs out.
RENEW_SHARE = 0.1
# One lease request (renew, create, delete); nats-py's default is 5 s, the whole lease.
REQUEST_TIMEOUT = 0.5
# After a failed lease request, try again this soon: on another node, once reconnected.
RETRY_AFTER = 0.1
# "No responders" on the holder's alive subject for this long: its process is gone.
# Longer than a reconnect (services reconnect every 0.5 s), shorter than a TTL.
GONE_AFTER = 1.0
# JetStream's "wrong last sequence": a compare-and-set on a revision that is no longer the last.
WRONG_LAST_SEQUENCE = 10071
# How often a standby looks at the holder while it holds the key.
LOOK_EVERY = 0.2


def still_ours(sent_at: float | None, now: float, ttl: float) -> bool:
    """Whether a holder whose last good renewal was sent at ``sent_at`` may still act.

    A monotonic clock read before ``sent_at`` went backwards (a skew): how much time passed
    is unknown, so the lease is not counted on.
    """
    return sent_at is not None and 0.0 <= now - sent_at < ttl * SAFE_SHARE


def renew_in(ttl: float, failed: bool) -> float:
    return RETRY_AFTER if failed else ttl * RENEW_SHARE


@dataclass
class Seen:
    """What a standby last saw of the key: its revision and holder, and when (its monotonic clock)."""

    revision: int | None = None  # None: no key (never made, deleted or expired)
    holder: str | None = None
    at: float = 0.0
    gone_since: float | None = None  # first "no responders" from the holder, in a row


def worth_trying(seen: Seen, now: float, ttl: float) -> bool:
    """Whether a standby should try to create the key now."""
    if seen.revision is None:
        return True
    if now - seen.at >= ttl:  # not renewed for a whole TTL: the server has removed it
        return True
    return seen.gone_since is not None and now - seen.gone_since >= GONE_AFTER


class Lease:
    def __init__(self, kv: KeyValue, nc: Client, holder: str, ttl: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.kv = kv
        self.nc = nc  # the holder's sign of life and a standby's question go over core NATS
        self.holder = holder
        self.ttl = ttl
        self.clock = clock
        self.revision: int | None = None
        self.sent_at: float | None = None  # when the last create or renew that succeeded was sent
        self.seen = Seen()
        self._alive_sub = None
        self.changed = asyncio.Event()  # the watch saw the key change

    @property
    def held(self) -> bool:
        """Ours, and still safe to act on: false as soon as the holder's share of the TTL ran out,
        whether or not the renewing task noticed yet."""
        return self.revision is not None and still_ours(self.sent_at, self.clock(), self.ttl)

    def drop(self) -> None:
        self.revision, self.sent_at = None, None

    async def _write(self, request) -> int:
        return await asyncio.wait_for(request, timeout=REQUEST_TIMEOUT)

    async def acquire(self) -> bool:
        sent = self.clock()
        try:
            revision = await self._write(self.kv.create(LEASE_KEY, self.holder.encode()))
        except KeyWrongLastSequenceError:
            return False
        self.revision, self.sent_at = revision, sent
        log.info("lease acquired by %s", self.holder)
        return True

    async def renew(self) -> bool:
        """True when renewed; False when someone else has the key (stop at once).  Raises when
        NATS did not answer: the lease may still be ours until ``held`` says otherwise."""
        sent = self.clock()
        try:
            self.revision = await self._write(self.kv.update(LEASE_KEY, self.holder.encode(), last=self.revision))
        except (KeyWrongLastSequenceError, KeyNotFoundError):
            log.warning("lease lost by %s", self.holder)
            self.drop()
            return False
        self.sent_at = sent
        return True

    async def release(self) -> None:
        revision = self.revision
        self.drop()  # not held from now on, even while NATS is away
        if revision is not None:
            try:
                await self._write(self.kv.delete(LEASE_KEY, last=revision))
            except Exception:  # expiry releases it anyway
                pass

    async def holder_name(self) -> str | None:
        try:
            entry = await self.kv.get(LEASE_KEY)
            return entry.value.decode() if entry.value else None
        except KeyNotFoundError:
            return None

    # --- the holder's sign of life ---------------------------------------------------

    async def answer_alive(self) -> None:
        """Answer on our alive subject for as long as this process is connected."""
        async def pong(msg) -> None:
            await msg.respond(b"")

        self._alive_sub = await self.nc.subscribe(lease_alive(self.holder), cb=pong)

    async def stop_answering(self) -> None:
        if self._alive_sub is not None:
            sub, self._alive_sub = self._alive_sub, None
            try:
                await sub.unsubscribe()
            except Exception:  # a closed connection answers nothing anyway
                pass

    async def look_at_holder(self) -> None:
        """Ask the holder we saw whether its process is there; note a "no responders" streak."""
        holder = self.seen.holder
        if holder is None or self.seen.revision is None or holder == self.holder:
            self.seen.gone_since = None
            return
        try:
            await self.nc.request(lease_alive(holder), b"", timeout=REQUEST_TIMEOUT)
            self.seen.gone_since = None
        except nats.errors.NoRespondersError:
            if self.seen.gone_since is None:
                self.seen.gone_since = self.clock()
        except Exception:  # slow, stopped or partitioned: only the TTL frees its lease
            self.seen.gone_since = None

    # --- a standby's view of the key ------------------------------------------------

    def observe(self, revision: int | None, holder: str | None) -> None:
        if revision != self.seen.revision or holder != self.seen.holder:
            self.seen = Seen(revision, holder, self.clock())
        else:
            self.seen.at = self.clock()
        self.changed.set()

    async def watch(self) -> None:
        """Keep ``seen`` current from a KV watch of the key (runs until cancelled)."""
        while True:
            try:
                watcher = await self.kv.watch(LEASE_KEY)
                async for entry in watcher:
                    if entry is None:
                        continue
                    if entry.operation in ("DEL", "PURGE") or not entry.value:
                        self.observe(None, None)
                    else:
                        self.observe(entry.revision, entry.value.decode())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("lease watch failed (%s); watching again", exc)
                await asyncio.sleep(RETRY_AFTER)

    async def take_from_gone_holder(self) -> None:
        """Delete the key of a holder whose process is gone, unless it renewed since we saw it."""
        if self.seen.revision is None or self.seen.gone_since is None:
            return
        log.warning("%s: the lease holder %s is gone (no responders); taking over", self.holder, self.seen.holder)
        try:
            await self._write(self.kv.delete(LEASE_KEY, last=self.seen.revision))
        except KeyWrongLastSequenceError:
            pass  # renewed after all, or already gone: the watch tells
        except nats.js.errors.BadRequestError as exc:
            # The same miss as nats-py's delete reports it: a plain 400.  A key the TTL removed
            # meanwhile (no watch entry tells of an expiry) misses this way at every look, and
            # the create that would succeed must still be tried.
            if exc.err_code != WRONG_LAST_SEQUENCE:
                raise
