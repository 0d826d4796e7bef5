"""The lease's rules with plain values, then fast failover against a real nats-server (decision 65)."""

import asyncio
import time

from schemas import subjects
from schemas.commands import NewPromise
from schemas.streams import bucket_configs
from services.scheduler.lease import GONE_AFTER, SAFE_SHARE, Lease, Seen, still_ours, worth_trying
from services.scheduler.service import Scheduler
from valor import bus
from valor.client import ValorClient

from .test_service import announce, take_work


def test_a_holder_acts_only_within_its_share_of_the_ttl_counted_from_sending_its_renewal():
    assert still_ours(100.0, 100.0 + 10 * SAFE_SHARE - 0.01, 10.0)
    assert not still_ours(100.0, 100.0 + 10 * SAFE_SHARE, 10.0)
    assert not still_ours(None, 100.0, 10.0)
    # a monotonic clock that went backwards (a skew): how long it has been is unknown, so not ours
    assert not still_ours(100.0, 99.0, 10.0)


def test_a_standby_tries_when_the_key_is_gone_expired_or_its_holder_s_process_is_gone():
    ttl = 10.0
    assert worth_trying(Seen(), 0.0, ttl)  # no key
    renewed = Seen(revision=7, holder="a", at=100.0)
    assert not worth_trying(renewed, 105.0, ttl)
    assert worth_trying(renewed, 110.0, ttl)  # a whole TTL without a renewal seen
    gone = Seen(revision=7, holder="a", at=100.0, gone_since=101.0)
    assert not worth_trying(gone, 101.0 + GONE_AFTER - 0.01, ttl)  # maybe only reconnecting
    assert worth_trying(gone, 101.0 + GONE_AFTER, ttl)


async def fresh_lease_bucket(js, ttl: float) -> None:
    await js.delete_key_value(subjects.LEASE_BUCKET)
    [lease] = [c for c in bucket_configs(lease_ttl=ttl) if c.bucket == subjects.LEASE_BUCKET]
    await js.create_key_value(lease)


async def until(condition, timeout: float = 8.0) -> float:
    """Seconds until ``condition()`` held (the caller asserts it)."""
    t0 = time.monotonic()
    while not condition() and time.monotonic() - t0 < timeout:
        await asyncio.sleep(0.02)
    return time.monotonic() - t0


async def standing_by(s: Scheduler, holder: Scheduler) -> Scheduler:
    """Started, and its watch has seen ``holder`` hold the key."""
    await s.start()
    await until(lambda: s.lease.seen.holder == holder.name)
    assert s.lease.seen.holder == holder.name and not s.leader
    return s


async def leading(s: Scheduler, timeout: float = 10.0) -> Scheduler:
    await s.start()
    deadline = time.monotonic() + timeout
    while not (s.leader and s._leader_tasks) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert s.leader
    return s


async def test_a_killed_leader_is_replaced_within_two_seconds_though_its_lease_runs_ten(nats_server, nc, js):
    """The holder's connection closes without releasing (kill -9): the standby sees "no responders"
    on its alive subject and takes the key long before the 10 s TTL would free it."""
    await fresh_lease_bucket(js, 10.0)
    doomed_nc = await bus.connect(nats_server.url, name="doomed")
    first = await leading(Scheduler(doomed_nc, name="first"))
    second = await standing_by(Scheduler(nc, name="second"), first)
    for task in first._tasks + first._leader_tasks:  # the process dies: no release, no more renewals
        task.cancel()
    await doomed_nc.close()
    took = await until(lambda: second.leader and second._leader_tasks)
    assert second.leader and took < 2.0, took
    await announce(js)
    ids = await ValorClient(nc).submit(NewPromise(title="after failover"))
    [item] = await take_work(js)
    assert item.id == ids["0"]
    await second.stop()


async def test_a_standby_takes_the_key_of_a_gone_holder_whose_key_the_ttl_removed_first(nc, js):
    """The holder died and the server removed its key by TTL before the standby acted: no watch
    entry tells of an expiry, so the standby still names the old revision; its compare-and-set
    delete misses (there is nothing left to delete) and it creates the key all the same.
    Seen once in CI on a loaded machine: the standby tried the delete for 15 s and never the create."""
    await fresh_lease_bucket(js, 1.0)
    kv = await js.key_value(subjects.LEASE_BUCKET)
    gone = Lease(kv, nc, "gone", ttl=1.0)
    assert await gone.acquire()
    standby = Lease(kv, nc, "standby", ttl=1.0)
    standby.observe(gone.revision, "gone")
    while await standby.holder_name() is not None:  # the TTL runs out and the server removes the key
        await asyncio.sleep(0.05)
    await standby.look_at_holder()  # nobody answers on the holder's alive subject
    assert standby.seen.gone_since is not None
    await standby.take_from_gone_holder()
    assert await standby.acquire()


async def test_a_stopped_leader_hands_over_at_once_through_the_watch(nc, js):
    await fresh_lease_bucket(js, 10.0)
    first = await leading(Scheduler(nc, name="first"))
    second = await standing_by(Scheduler(nc, name="second"), first)
    t0 = time.monotonic()
    await first.stop()  # deletes the key: the standby's watch sees it
    await until(lambda: second.leader)
    assert second.leader and time.monotonic() - t0 < 1.0
    await second.stop()


async def test_a_leader_that_cannot_renew_stops_acting_before_the_ttl_could_free_its_key(nc, js):
    await fresh_lease_bucket(js, 1.0)
    s = await leading(Scheduler(nc, name="cut-off"))

    async def unanswered(*_args, **_kwargs):
        raise TimeoutError("the lease bucket is electing a leader")

    sent = s.lease.sent_at
    s.lease.renew = unanswered
    while s.leader:
        await asyncio.sleep(0.01)
    # stopped within its share of the TTL (the server frees the key a whole TTL after storing it)
    assert s.monotonic() - sent < 1.0
    await until(lambda: not s._leader_tasks)  # and its COMMANDS and CHAT pulls end
    assert not s._leader_tasks
    await s.stop()
