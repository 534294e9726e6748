"""Leases: one process works a job at a time, and a dead process's jobs are picked up."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import timedelta

import pytest

from bot.store import JobState, Origin, open_store
from bot.store.base import JobStore
from bot.store.leases import pid_alive
from tests.store.helpers import GENEROUS, NOW, new_job

HOST = "bot-host"
LEASE_S = 30.0
ME = os.getpid()


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The id of a process that has just exited (and been reaped), so nothing answers to it."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not pid_alive(child.pid)
    return child.pid


async def pending(store: JobStore, origin: Origin = Origin.DISCORD) -> int:
    return (await store.create_job(new_job(origin=origin), defaults=GENEROUS, now=NOW)).id


def test_pid_alive() -> None:
    assert pid_alive(ME)
    assert pid_alive(None)  # unknown: wait for the lease to lapse instead
    assert pid_alive(0)


@pytest.mark.host_clock
async def test_a_free_job_is_claimed_and_then_held(store: JobStore) -> None:
    job_id = await pending(store)
    assert [j.id for j in await store.claimable([Origin.DISCORD], now=NOW, host=HOST)] == [job_id]
    assert await store.claim(job_id, "worker-a", host=HOST, pid=ME, now=NOW, lease_s=LEASE_S)
    job = await store.get_job(job_id)
    assert job is not None
    assert (job.lease_owner, job.lease_expires_at) == ("worker-a", NOW + timedelta(seconds=LEASE_S))
    # A live owner's job is neither offered nor taken, on this host or another.
    assert await store.claimable([Origin.DISCORD], now=NOW, host=HOST) == []
    assert await store.claimable([Origin.DISCORD], now=NOW, host="other-host") == []
    assert not await store.claim(job_id, "worker-b", host=HOST, pid=ME, now=NOW, lease_s=LEASE_S)
    assert not await store.claim(job_id, "worker-c", host="other-host", pid=ME, now=NOW, lease_s=LEASE_S)
    # The owner may claim again (it extends the lease).
    later = NOW + timedelta(seconds=10)
    assert await store.claim(job_id, "worker-a", host=HOST, pid=ME, now=later, lease_s=LEASE_S)
    job = await store.get_job(job_id)
    assert job is not None and job.lease_expires_at == later + timedelta(seconds=LEASE_S)


@pytest.mark.host_clock
async def test_a_lapsed_lease_is_taken(store: JobStore) -> None:
    job_id = await pending(store)
    assert await store.claim(job_id, "worker-a", host="other-host", pid=ME, now=NOW, lease_s=LEASE_S)
    at_expiry = NOW + timedelta(seconds=LEASE_S)
    assert not await store.claim(job_id, "worker-b", host=HOST, pid=ME, now=at_expiry, lease_s=LEASE_S)
    after = at_expiry + timedelta(microseconds=1)
    assert [j.id for j in await store.claimable([Origin.DISCORD], now=after, host=HOST)] == [job_id]
    assert await store.claim(job_id, "worker-b", host=HOST, pid=ME, now=after, lease_s=LEASE_S)
    job = await store.get_job(job_id)
    assert job is not None and job.lease_owner == "worker-b"


@pytest.mark.host_clock
async def test_a_dead_process_on_this_host_loses_its_lease_at_once(store: JobStore, dead_pid: int) -> None:
    job_id = await pending(store)
    assert await store.claim(job_id, "crashed", host=HOST, pid=dead_pid, now=NOW, lease_s=LEASE_S)
    soon = NOW + timedelta(seconds=1)
    # Another host cannot check the pid, so for it the lease stands until it lapses.
    assert await store.claimable([Origin.DISCORD], now=soon, host="other-host") == []
    assert not await store.claim(job_id, "elsewhere", host="other-host", pid=ME, now=soon, lease_s=LEASE_S)
    # The restarted bot on the same host takes it without waiting.
    assert [j.id for j in await store.claimable([Origin.DISCORD], now=soon, host=HOST)] == [job_id]
    assert await store.claim(job_id, "restarted", host=HOST, pid=ME, now=soon, lease_s=LEASE_S)
    assert not await store.claim(job_id, "third", host=HOST, pid=ME, now=soon, lease_s=LEASE_S)


async def test_racing_claims_have_one_winner(store_url: str) -> None:
    stores = [await open_store(store_url) for _ in range(3)]
    try:
        job_id = await pending(stores[0])
        results = await asyncio.gather(*(
            s.claim(job_id, f"worker-{n}-{i}", host=HOST, pid=ME, now=NOW, lease_s=LEASE_S)
            for n, s in enumerate(stores) for i in range(5)))
        assert results.count(True) == 1
    finally:
        for s in stores:
            await s.close()


@pytest.mark.host_clock
async def test_racing_takeovers_of_a_dead_lease_have_one_winner(store: JobStore, dead_pid: int) -> None:
    job_id = await pending(store)
    assert await store.claim(job_id, "crashed", host=HOST, pid=dead_pid, now=NOW, lease_s=LEASE_S)
    results = await asyncio.gather(*(
        store.claim(job_id, f"worker-{i}", host=HOST, pid=ME, now=NOW, lease_s=LEASE_S) for i in range(10)))
    assert results.count(True) == 1


async def test_claiming_an_unknown_job_fails(store: JobStore) -> None:
    assert not await store.claim(9999, "worker", host=HOST, pid=ME, now=NOW, lease_s=LEASE_S)


async def test_release_frees_only_the_owners_lease(store: JobStore) -> None:
    job_id = await pending(store)
    await store.claim(job_id, "worker-a", host=HOST, pid=ME, now=NOW, lease_s=LEASE_S)
    await store.release(job_id, "worker-b")
    assert await store.claimable([Origin.DISCORD], now=NOW, host=HOST) == []
    await store.release(job_id, "worker-a")
    job = await store.get_job(job_id)
    assert job is not None and (job.lease_owner, job.lease_expires_at) == (None, None)
    assert await store.claim(job_id, "worker-b", host=HOST, pid=ME, now=NOW, lease_s=LEASE_S)


@pytest.mark.host_clock
async def test_renewal_keeps_unfinished_and_undelivered_work(store: JobStore) -> None:
    running, undelivered, delivered, someone_elses = [await pending(store) for _ in range(4)]
    for job_id in (running, undelivered, delivered):
        await store.claim(job_id, "worker-a", host=HOST, pid=ME, now=NOW, lease_s=LEASE_S)
    await store.claim(someone_elses, "worker-b", host=HOST, pid=ME, now=NOW, lease_s=LEASE_S)
    await store.update_job(running, now=NOW, state=JobState.RUNNING)
    for job_id in (undelivered, delivered):
        await store.update_job(job_id, now=NOW, state=JobState.SUCCEEDED)
        await store.enqueue_delivery(job_id, "discord", now=NOW)
    await store.delivery_done(delivered, "discord", now=NOW)

    later = NOW + timedelta(seconds=20)
    assert await store.renew_leases("worker-a", now=later, lease_s=LEASE_S) == 2
    expiries = {}
    for job_id in (running, undelivered, delivered, someone_elses):
        job = await store.get_job(job_id)
        assert job is not None
        expiries[job_id] = job.lease_expires_at
    renewed = later + timedelta(seconds=LEASE_S)
    original = NOW + timedelta(seconds=LEASE_S)
    assert expiries == {running: renewed, undelivered: renewed, delivered: original, someone_elses: original}


async def test_claimable_is_unfinished_or_undelivered_work_of_the_given_origins(store: JobStore) -> None:
    discord_jobs = [await pending(store) for _ in range(3)]
    cli_job = await pending(store, Origin.CLI)
    done_delivered, done_undelivered, done_never_queued = [await pending(store) for _ in range(3)]
    for job_id in (done_delivered, done_undelivered, done_never_queued):
        await store.update_job(job_id, now=NOW, state=JobState.SUCCEEDED)
    await store.enqueue_delivery(done_delivered, "discord", now=NOW)
    await store.delivery_done(done_delivered, "discord", now=NOW)
    await store.enqueue_delivery(done_undelivered, "discord", now=NOW)

    found = await store.claimable([Origin.DISCORD], now=NOW, host=HOST)
    assert [j.id for j in found] == [*discord_jobs, done_undelivered]  # oldest first
    both = await store.claimable([Origin.DISCORD, Origin.CLI], now=NOW, host=HOST)
    assert cli_job in [j.id for j in both]
    assert [j.id for j in await store.claimable([Origin.DISCORD], now=NOW, host=HOST, limit=2)] == \
        discord_jobs[:2]
    assert await store.claimable([], now=NOW, host=HOST) == []


async def test_live_leases_here_do_not_crowd_out_the_limit(store: JobStore) -> None:
    held = [await pending(store) for _ in range(3)]
    for job_id in held:
        await store.claim(job_id, "worker-a", host=HOST, pid=ME, now=NOW, lease_s=LEASE_S)
    free = await pending(store)
    assert [j.id for j in await store.claimable([Origin.DISCORD], now=NOW, host=HOST, limit=1)] == [free]
