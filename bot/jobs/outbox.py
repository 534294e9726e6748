"""The delivery outbox: a finished job is handed to its receiver until the receiver confirms, retried with
backoff, and given up (marked undeliverable, charged nothing) after DELIVERY_MAX_ATTEMPTS failures."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Protocol

from bot.errors import StoreBusyError
from bot.jobs.conclude import Concluding
from bot.ops import metrics
from bot.store.models import Job

log = logging.getLogger(__name__)

DELIVERY_BACKOFF_S = (2.0, 5.0, 15.0, 60.0, 300.0)
DELIVERY_SCAN_S = 2.0


class Deliverer(Protocol):
    """Hands a finished job to its receiver. Must raise on failure, and must not post twice: where the
    receiver has no idempotency key it checks whether the result is already there before posting."""

    async def deliver(self, job: Job) -> None: ...


class Outbox(Concluding):
    async def _deliver_now(self, job: Job) -> None:
        target = job.origin.value
        deliverer = self.deliverers.get(target)
        if deliverer is None or job.id in self._delivering:
            return
        self._delivering.add(job.id)  # before any await: two callers in this process never both deliver
        try:
            if await self.store.is_delivered(job.id, target):
                await self.store.release(job.id, self.owner)
                return
            await deliverer.deliver(job)
        except Exception as exc:
            await self._delivery_failed(job, target, exc)
            return
        finally:
            self._delivering.discard(job.id)
        self._delivery_failures.pop(job.id, None)
        metrics.DELIVERIES.labels(target, "delivered").inc()
        await self.store.delivery_done(job.id, target, now=self.clock())
        await self.store.release(job.id, self.owner)

    async def _delivery_failed(self, job: Job, target: str, exc: Exception) -> None:
        attempt = self._delivery_failures.get(job.id, 0)
        self._delivery_failures[job.id] = attempt + 1
        wait = DELIVERY_BACKOFF_S[min(attempt, len(DELIVERY_BACKOFF_S) - 1)]
        failed = await self.store.delivery_failed(job.id, target, error=str(exc)[:500],
                                                  next_attempt_at=self.clock() + timedelta(seconds=wait))
        metrics.DELIVERIES.labels(target, "failed").inc()
        if failed >= self.settings.delivery_max_attempts:
            metrics.DELIVERIES.labels(target, "given_up").inc()
            await self._give_up_delivery(job, target, failed, exc)
            return
        metrics.DELIVERY_RETRIES.labels(target).inc()
        log.warning("delivery of job %s failed (attempt %d), retrying in %.0f s: %s", job.id, failed, wait, exc)

    async def _give_up_delivery(self, job: Job, target: str, attempts: int, exc: Exception) -> None:
        """No delivery is retried forever: the job is marked undeliverable (shown in /jobs and `atelier jobs`)
        and, its member never having got it, charged nothing."""
        log.error("delivery of job %s failed %d times; giving up, the job is marked undeliverable: %s", job.id,
                  attempts, exc)
        if await self.store.give_up_delivery(job.id, target, error=str(exc)[:500], now=self.clock()):
            await self._settle(await self._reload(job))
        self._delivery_failures.pop(job.id, None)
        await self.store.release(job.id, self.owner)

    async def _delivery_loop(self) -> None:
        while True:
            # A plain sleep: failed deliveries are retried on their own schedule (next_attempt_at), so nothing
            # needs to wake this loop early.
            await asyncio.sleep(DELIVERY_SCAN_S)
            try:
                await self._deliver_due()
            except StoreBusyError as exc:
                log.warning("delivery scan: %s", exc)
            except Exception:
                log.exception("delivery scan failed; trying again in %.0f s", DELIVERY_SCAN_S)

    async def _deliver_due(self) -> None:
        if self.draining:  # after SIGTERM: the next process delivers what is due
            return
        due = await self.store.due_deliveries(now=self.clock(), targets=sorted(self.deliverers))
        for delivery in due:
            if delivery.job_id in self._live or delivery.job_id in self._delivering:
                continue
            job = await self.store.get_job(delivery.job_id)
            if job is None or job.origin not in self.config.origins:
                continue
            if await self._claim(delivery.job_id):
                self._spawn(job.id)
        await self.adopt()
