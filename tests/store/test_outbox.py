"""The delivery outbox: results are delivered once, retried with backoff, never lost by a restart."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from bot.store import Delivery, JobState
from bot.store.base import JobStore
from tests.store.helpers import GENEROUS, NOW, new_job


async def finished_job(store: JobStore) -> int:
    job = await store.create_job(new_job(), defaults=GENEROUS, now=NOW)
    await store.update_job(job.id, now=NOW, state=JobState.SUCCEEDED)
    return job.id


async def test_enqueueing_twice_queues_once(store: JobStore) -> None:
    job_id = await finished_job(store)
    await store.enqueue_delivery(job_id, "discord", now=NOW)
    await store.delivery_failed(job_id, "discord", error="HTTP 503", next_attempt_at=NOW)
    await store.enqueue_delivery(job_id, "discord", now=NOW + timedelta(minutes=1))  # e.g. after a restart
    assert await store.due_deliveries(now=NOW, targets=["discord"]) == [
        Delivery(job_id=job_id, target="discord", attempts=1, next_attempt_at=NOW, last_error="HTTP 503")]
    # Another target for the same job is its own delivery.
    await store.enqueue_delivery(job_id, "cli", now=NOW)
    assert len(await store.due_deliveries(now=NOW, targets=["discord", "cli"])) == 2


async def test_due_deliveries_oldest_first_for_the_asked_targets(store: JobStore) -> None:
    first, second, third, future, cli = [await finished_job(store) for _ in range(5)]
    await store.enqueue_delivery(third, "discord", now=NOW - timedelta(seconds=1))
    await store.enqueue_delivery(first, "discord", now=NOW - timedelta(seconds=30))
    await store.enqueue_delivery(second, "discord", now=NOW - timedelta(seconds=20))
    await store.enqueue_delivery(future, "discord", now=NOW + timedelta(seconds=5))
    await store.enqueue_delivery(cli, "cli", now=NOW - timedelta(minutes=5))

    due = await store.due_deliveries(now=NOW, targets=["discord"])
    assert [d.job_id for d in due] == [first, second, third]
    assert all(d.next_attempt_at.tzinfo is not None for d in due)
    assert [d.job_id for d in await store.due_deliveries(now=NOW, targets=["discord"], limit=2)] == [first, second]
    assert [d.job_id for d in await store.due_deliveries(now=NOW, targets=["cli"])] == [cli]
    assert await store.due_deliveries(now=NOW, targets=[]) == []
    later = await store.due_deliveries(now=NOW + timedelta(seconds=5), targets=["discord"])
    assert [d.job_id for d in later] == [first, second, third, future]


async def test_a_failed_delivery_waits_for_its_next_attempt(store: JobStore) -> None:
    job_id = await finished_job(store)
    await store.enqueue_delivery(job_id, "discord", now=NOW)
    retry_at = NOW + timedelta(seconds=30)
    await store.delivery_failed(job_id, "discord", error="403 Missing Access", next_attempt_at=retry_at)
    assert await store.due_deliveries(now=NOW + timedelta(seconds=29), targets=["discord"]) == []
    await store.delivery_failed(job_id, "discord", error="x" * 10_000, next_attempt_at=retry_at)
    (due,) = await store.due_deliveries(now=retry_at, targets=["discord"])
    assert due.attempts == 2
    assert due.last_error is not None and len(due.last_error) == 2000


async def test_done_happens_exactly_once(store: JobStore) -> None:
    job_id = await finished_job(store)
    await store.enqueue_delivery(job_id, "discord", now=NOW)
    assert not await store.is_delivered(job_id, "discord")
    results = await asyncio.gather(*(store.delivery_done(job_id, "discord", now=NOW) for _ in range(10)))
    assert results.count(True) == 1
    assert await store.is_delivered(job_id, "discord")
    assert not await store.delivery_done(job_id, "discord", now=NOW)
    assert await store.due_deliveries(now=NOW + timedelta(days=1), targets=["discord"]) == []
    # A late failure report from a slower worker does not bring it back.
    await store.delivery_failed(job_id, "discord", error="timeout", next_attempt_at=NOW)
    assert await store.due_deliveries(now=NOW, targets=["discord"]) == []
    await store.enqueue_delivery(job_id, "discord", now=NOW)
    assert await store.due_deliveries(now=NOW, targets=["discord"]) == []


async def test_a_delivery_made_straight_away_is_recorded(store: JobStore) -> None:
    job_id = await finished_job(store)
    assert await store.delivery_done(job_id, "discord", now=NOW)
    assert await store.is_delivered(job_id, "discord")
    assert not await store.is_delivered(job_id, "cli")
    assert not await store.delivery_done(job_id, "discord", now=NOW)
