"""Retry delays: exponential, capped, with jitter that is deterministic.

The jitter comes from a hash of (promise id, attempt) rather than a random
generator, so the decision is a pure function and a replayed log would decide
the same delay.  It still spreads retries of many promises apart.
"""

from __future__ import annotations

import hashlib


def unit_noise(promise_id: int, attempt: int) -> float:
    """A stable number in [-1, 1) for this promise and attempt."""
    digest = hashlib.blake2b(f"{promise_id}:{attempt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**63 - 1.0


def retry_delay(
    promise_id: int,
    failed_attempt: int,
    base: float,
    factor: float = 2.0,
    cap: float = 300.0,
    jitter: float = 0.1,
) -> float:
    """Delay before the attempt after ``failed_attempt`` (1-based): min(cap, base·factor^(n-1)) ± jitter."""
    raw = min(cap, base * factor ** (failed_attempt - 1))
    return max(0.0, raw * (1.0 + jitter * unit_noise(promise_id, failed_attempt)))
