"""Leases on PostgreSQL: timed by the server's clock, a dead process noticed at once on any host through its
liveness lock, work split between processes with SKIP LOCKED, and fenced writes that stop when the job was taken
over. A real server, a database per test; the process that dies is a real process killed with SIGKILL."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.store import JobState, Origin, PostgresJobStore, open_store
from bot.store.base import JobStore, SharedJobStore
from bot.store.fencing import LeaseLostError, work_as
from bot.store.models import PostKind
from tests.store.helpers import GENEROUS, NOW, new_job

REPO = Path(__file__).resolve().parents[2]
ME = os.getpid()
FAR_FUTURE = NOW + timedelta(days=3650)  # a host clock gone wrong: it must not free anyone's lease


async def pending(store: JobStore) -> int:
    return (await store.create_job(new_job(), defaults=GENEROUS, now=NOW)).id


async def test_a_lease_runs_on_the_servers_clock(pg: PostgresJobStore) -> None:
    job_id = await pending(pg)
    assert await pg.claim(job_id, "worker-a", host="h1", pid=ME, now=NOW, lease_s=30)
    job = await pg.get_job(job_id)
    assert job is not None and job.lease_expires_at is not None
    # Thirty seconds from the server's now (this machine's clock, here), whatever `now` the caller passed.
    assert abs((job.lease_expires_at - datetime.now(UTC)).total_seconds() - 30) < 5
    # A host whose clock runs years ahead cannot take a live lease.
    assert not await pg.claim(job_id, "worker-b", host="h2", pid=ME, now=FAR_FUTURE, lease_s=30)
    assert await pg.claimable([Origin.DISCORD], now=FAR_FUTURE, host="h2") == []


async def test_a_lapsed_lease_is_taken_once_the_server_says_it_lapsed(pg: PostgresJobStore) -> None:
    job_id = await pending(pg)
    assert await pg.claim(job_id, "worker-a", host="h1", pid=ME, now=NOW, lease_s=0.3)
    assert not await pg.claim(job_id, "worker-b", host="h2", pid=ME, now=NOW, lease_s=30)
    await asyncio.sleep(0.5)
    assert [j.id for j in await pg.claimable([Origin.DISCORD], now=NOW, host="h2")] == [job_id]
    assert await pg.claim(job_id, "worker-b", host="h2", pid=ME, now=NOW, lease_s=30)
    job = await pg.get_job(job_id)
    assert job is not None and job.lease_owner == "worker-b"


async def start_holder(url: str, job_id: int, owner: str) -> asyncio.subprocess.Process:
    holder = await asyncio.create_subprocess_exec(sys.executable, "-m", "tests.store.lease_holder", url,
                                                  str(job_id), owner, cwd=REPO, stdout=asyncio.subprocess.PIPE)
    assert holder.stdout is not None
    assert await asyncio.wait_for(holder.stdout.readline(), 30) == b"holding\n"
    return holder


async def test_a_killed_process_loses_its_jobs_at_once_to_any_host(pg: PostgresJobStore, pg_url: str) -> None:
    job_id = await pending(pg)
    holder = await start_holder(pg_url, job_id, "holder:1:a")
    try:
        # Alive, on another host: its five-minute lease stands.
        assert await pg.claimable([Origin.DISCORD], now=NOW, host="elsewhere") == []
        assert not await pg.claim(job_id, "rescuer", host="elsewhere", pid=ME, now=NOW, lease_s=30)
        holder.kill()
        await holder.wait()
        # No waiting for the lease: the server dropped the dead process's liveness lock with its connection.
        deadline = asyncio.get_running_loop().time() + 5
        while not await pg.claimable([Origin.DISCORD], now=NOW, host="elsewhere"):
            assert asyncio.get_running_loop().time() < deadline, "the dead process still looks alive"
            await asyncio.sleep(0.05)
        results = await asyncio.gather(*(pg.claim(job_id, f"rescuer-{i}", host="elsewhere", pid=ME, now=NOW,
                                                  lease_s=30) for i in range(10)))
        assert results.count(True) == 1
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()


async def test_processes_claiming_at_once_split_the_work(pg: PostgresJobStore, pg_url: str) -> None:
    jobs = [await pending(pg) for _ in range(30)]
    others = [await open_store(pg_url) for _ in range(3)]
    try:
        stores: list[SharedJobStore] = [s for s in others if isinstance(s, PostgresJobStore)]
        taken = await asyncio.gather(*(s.claim_batch([Origin.DISCORD], f"worker-{n}", host="h", pid=ME,
                                                     lease_s=30, limit=30) for n, s in enumerate(stores)))
        every = [job_id for batch in taken for job_id in batch]
        assert sorted(every) == jobs  # each job to exactly one process
        assert await stores[0].claim_batch([Origin.DISCORD], "late", host="h", pid=ME, lease_s=30, limit=30) == []
    finally:
        for s in others:
            await s.close()


async def worker_writes(store: JobStore, owner: str, job_id: int) -> None:
    """What a job's task does: its writes are fenced by its lease."""
    work_as(owner)
    await store.transition(job_id, JobState.SUBMITTING, now=NOW)


async def test_a_worker_that_lost_its_lease_writes_nothing(pg: PostgresJobStore) -> None:
    job_id = await pending(pg)
    assert await pg.claim(job_id, "stalled", host="h1", pid=ME, now=NOW, lease_s=0.2)
    await asyncio.sleep(0.4)
    assert await pg.claim(job_id, "successor", host="h2", pid=ME, now=NOW, lease_s=30)

    for write in (lambda: pg.transition(job_id, JobState.SUBMITTING, now=NOW),
                  lambda: pg.update_job(job_id, now=NOW, progress=0.5),
                  lambda: pg.open_post(job_id, PostKind.STATUS, channel_id=1),
                  lambda: pg.delivery_done(job_id, "discord", now=NOW),
                  lambda: pg.settle_cost(job_id, images=0, now=NOW)):
        async def fenced(write=write) -> object:  # type: ignore[no-untyped-def]
            work_as("stalled")
            return await write()
        with pytest.raises(LeaseLostError):
            await asyncio.create_task(fenced())
    job = await pg.get_job(job_id)
    assert job is not None and (job.state, job.progress, job.refunded) == (JobState.PENDING, None, False)
    assert await pg.posts_of(job_id) == [] and not await pg.is_delivered(job_id, "discord")

    # The holder's own writes land; so does an unfenced one (a member's cancel, from any process).
    await asyncio.create_task(worker_writes(pg, "successor", job_id))
    assert await pg.transition(job_id, JobState.CANCELLED, now=NOW) is not None


async def test_a_stalled_worker_renews_before_it_writes(pg: PostgresJobStore) -> None:
    job_id = await pending(pg)
    assert await pg.claim(job_id, "slow", host="h1", pid=ME, now=NOW, lease_s=1.0)
    await pg.renew_leases("slow", now=NOW, lease_s=1.0)
    before = await pg.get_job(job_id)
    await asyncio.sleep(0.7)  # past half the lease without a renewal: the next write renews first
    await asyncio.create_task(worker_writes(pg, "slow", job_id))
    after = await pg.get_job(job_id)
    assert before is not None and after is not None and after.state is JobState.SUBMITTING
    assert after.lease_expires_at is not None and before.lease_expires_at is not None
    assert after.lease_expires_at - before.lease_expires_at >= timedelta(seconds=0.6)


async def test_renewal_keeps_unfinished_and_undelivered_work(pg: PostgresJobStore) -> None:
    running, undelivered, delivered, someone_elses = [await pending(pg) for _ in range(4)]
    for job_id in (running, undelivered, delivered):
        await pg.claim(job_id, "worker-a", host="h", pid=ME, now=NOW, lease_s=30)
    await pg.claim(someone_elses, "worker-b", host="h", pid=ME, now=NOW, lease_s=30)
    await pg.update_job(running, now=NOW, state=JobState.RUNNING)
    for job_id in (undelivered, delivered):
        await pg.update_job(job_id, now=NOW, state=JobState.SUCCEEDED)
        await pg.enqueue_delivery(job_id, "discord", now=NOW)
    await pg.delivery_done(delivered, "discord", now=NOW)
    before = {j: (await pg.get_job(j)).lease_expires_at for j in (running, undelivered, delivered, someone_elses)}  # type: ignore[union-attr]
    await asyncio.sleep(0.2)
    assert await pg.renew_leases("worker-a", now=NOW, lease_s=30) == 2
    after = {j: (await pg.get_job(j)).lease_expires_at for j in before}  # type: ignore[union-attr]
    moved = {j for j in before if after[j] != before[j]}
    assert moved == {running, undelivered}

