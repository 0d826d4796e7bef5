"""Stream and bucket configurations: the durable shape of the system.

Every stream uses file storage; the servers run with ``sync_interval: always``
(see ``deploy/nats``) so an acknowledged publish is on disk on every replica.
"""

from __future__ import annotations

from typing import Any

from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from . import subjects

DAY = 24 * 3600.0


def stream_configs(
    replicas: int = 1,
    chat_max_age: float = 30 * DAY,
    catchup_horizon: float = 7 * DAY,
    dedup_window: float = 600.0,
) -> list[StreamConfig]:
    def durable(**fields: Any) -> StreamConfig:
        return StreamConfig(storage=StorageType.FILE, num_replicas=replicas, **fields)

    return [
        durable(
            name=subjects.CHAT,
            description="every accepted inbound message; the last one per chat is its cursor",
            subjects=["chat.*.in"],
            retention=RetentionPolicy.LIMITS,
            max_age=chat_max_age,
            # A message re-read by catch-up anywhere inside the horizon is still a duplicate.
            duplicate_window=min(max(catchup_horizon, dedup_window), chat_max_age),
        ),
        durable(
            name=subjects.PROMISES,
            description="the promise event log, the source of truth",
            subjects=[subjects.ALL_PROMISE_EVENTS],
            retention=RetentionPolicy.LIMITS,
            duplicate_window=dedup_window,
            allow_direct=True,
            # A plan's `created` events are stored all or none (atomic batch publish).
            allow_atomic=True,
        ),
        durable(
            name=subjects.WORK,
            description="attempts dispatched and waiting for an executor",
            subjects=["work.*"],
            retention=RetentionPolicy.WORK_QUEUE,
            duplicate_window=dedup_window,
        ),
        durable(
            name=subjects.COMMANDS,
            description="requests from the CLI and operators",
            subjects=["cmd.*"],
            retention=RetentionPolicy.WORK_QUEUE,
            duplicate_window=dedup_window,
        ),
        durable(
            name=subjects.DLQ,
            description="undecodable or poison messages, with reason and origin in headers",
            subjects=["dlq.>"],
            retention=RetentionPolicy.LIMITS,
            discard=DiscardPolicy.OLD,
            max_age=30 * DAY,
        ),
    ]


def bucket_configs(replicas: int = 1, lease_ttl: float = 5.0, heartbeat_ttl: float = 10.0) -> list[KeyValueConfig]:
    return [
        KeyValueConfig(
            bucket=subjects.LEASE_BUCKET,
            description="the active scheduler's lease",
            history=1,
            ttl=lease_ttl,
            storage=StorageType.FILE,
            replicas=replicas,
        ),
        KeyValueConfig(
            bucket=subjects.EXECUTORS_BUCKET,
            description="executor heartbeats: queues, slots, busy",
            history=1,
            ttl=heartbeat_ttl,
            storage=StorageType.FILE,
            replicas=replicas,
        ),
    ]


def object_store_configs(replicas: int = 1) -> list[ObjectStoreConfig]:
    return [
        ObjectStoreConfig(
            bucket=subjects.SNAPSHOTS_BUCKET,
            # Derived data: losing it costs one full replay, never a fact.
            description="projection snapshots (state + stream sequence); a restart replays only the tail",
            storage=StorageType.FILE,
            replicas=replicas,
        ),
    ]
