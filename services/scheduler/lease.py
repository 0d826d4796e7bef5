"""One active scheduler: a lease in a KV bucket whose TTL is the lease length.

The holder renews with a compare-and-set on the key's revision; a standby
tries to create the key, which only succeeds once the holder stopped renewing
and the bucket's TTL removed it.  Losing a renewal means stepping down at once.
"""

from __future__ import annotations

import logging

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from schemas.subjects import LEASE_KEY

log = logging.getLogger("valor.scheduler.lease")


class Lease:
    def __init__(self, kv: KeyValue, holder: str) -> None:
        self.kv = kv
        self.holder = holder
        self.revision: int | None = None

    @property
    def held(self) -> bool:
        return self.revision is not None

    async def acquire(self) -> bool:
        try:
            self.revision = await self.kv.create(LEASE_KEY, self.holder.encode())
            log.info("lease acquired by %s", self.holder)
            return True
        except KeyWrongLastSequenceError:
            return False

    async def renew(self) -> bool:
        try:
            self.revision = await self.kv.update(LEASE_KEY, self.holder.encode(), last=self.revision)
            return True
        except (KeyWrongLastSequenceError, KeyNotFoundError):
            log.warning("lease lost by %s", self.holder)
            self.revision = None
            return False

    async def release(self) -> None:
        revision, self.revision = self.revision, None  # not held from now on, even while NATS is away
        if revision is not None:
            try:
                await self.kv.delete(LEASE_KEY, last=revision)
            except Exception:  # expiry releases it anyway
                pass

    async def holder_name(self) -> str | None:
        try:
            entry = await self.kv.get(LEASE_KEY)
            return entry.value.decode() if entry.value else None
        except KeyNotFoundError:
            return None
