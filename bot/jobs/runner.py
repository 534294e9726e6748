"""The job runner: every job is recorded before anything is sent, worked by one process at a time, and
delivered exactly once — through restarts and SIGKILL.

One task per job walks: pending -> (provider slot) -> submitting -> queued/running (poll) -> fetching ->
succeeded | failed | cancelled -> delivery outbox (bot.jobs.walk). This module is what the Discord layer and the
command line call; each step lives in its own module of bot.jobs.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from bot import codec
from bot.errors import ConfigError, InputError, ProviderError, QuotaError, RestartingError, StoreBusyError
from bot.jobs.cancel import JobNotFoundError
from bot.jobs.conclude import lifecycle_level
from bot.jobs.recovery import Recovering
from bot.jobs.upkeep import Upkeep
from bot.jobs.walk import Walking
from bot.operations import EditRequest, ImagineRequest, Request, image_count
from bot.ops import logs, metrics
from bot.store import patience
from bot.store.models import Job, Lease, NewJob, Origin, QuotaUsage, Subject

log = logging.getLogger(__name__)

RELEASE_WAIT_S = 1.0
# How long stopping waits for submits on the wire to store their handles (a drain passes what its grace leaves).
SUBMIT_WAIT_S = 15.0

Prepare = Callable[[Job], Awaitable[None]]  # see Runner.create


class Runner(Recovering, Walking, Upkeep):
    async def start(self) -> None:
        await self.store.join(self.owner, host=self.host, pid=self.pid)
        if self.shared is not None:
            self._listen_to_others(self.shared)
        self.tasks.spawn(self._heartbeat(), name="lease-heartbeat")
        if self.config.adopt:
            await self.adopt()
            self.tasks.spawn(self._delivery_loop(), name="delivery-loop")
            self.tasks.spawn(self._housekeeping_loop(), name="housekeeping")

    async def stop(self, *, submit_wait_s: float = SUBMIT_WAIT_S) -> None:
        self._stopping = True  # no new work from here on: a notification or a scan may still ask for some
        working = list(self._live)
        if self._submits and submit_wait_s > 0:
            # Let submits already on the wire store their handles, so the next start polls them.
            await asyncio.wait(set(self._submits), timeout=submit_wait_s)
        for send in list(self._submits):
            # Still on the wire (a synchronous call lasting minutes): abandoned as a crash would leave it; the next
            # process ends the job as interrupted, refunded, and never sends it again.
            send.cancel()
        await self.tasks.close()
        # Hand the jobs back at once, so a successor need not wait for the leases to lapse. Not worth waiting for
        # a database another program has locked: a successor on this host takes a dead process's jobs anyway.
        with patience.patient_for(RELEASE_WAIT_S):
            for job_id in working:
                try:
                    await self.store.release(job_id, self.owner)
                except StoreBusyError as exc:
                    log.warning("job %s: lease not released: %s", job_id, exc)
        if self.shared is not None and working:
            try:
                await self.shared.announce_free_work()  # the other processes take them over now
            except Exception as exc:  # they find them on their next scan anyway
                log.warning("could not tell the other processes about the jobs handed back: %s", exc)

    async def create(self, subject: Subject, origin: Origin, request: Request, *, provider: str | None = None,
                     preferred: Sequence[str] | None = None, channel_id: str | None = None,
                     parent_job_id: int | None = None, extra: Mapping[str, Any] | None = None,
                     start: bool = True, prepare: Prepare | None = None, withhold_nsfw: bool = False) -> Job:
        """Validate, store the inputs, charge the quota and record the job (one transaction), then start it.

        `prepare(job)` runs between recording and starting: where the job's receiver first shows it (the Discord
        layer posts its status message there, so progress has somewhere to go). Until it returns the job is leased
        to this process, so nobody else starts it; whatever it raises is logged and the job runs anyway (it is
        charged, and its result is owed).

        `withhold_nsfw`: the result will not be shown if an image is flagged NSFW (a channel that is not
        age-restricted), so such a result is not charged (bot.store.refunds).

        Raises InputError/ConfigError (nothing recorded), QuotaError (nothing recorded or charged) or, while the
        process drains after SIGTERM, RestartingError (nothing recorded or charged).
        """
        if self.draining:
            metrics.REFUSALS.labels("draining").inc()
            raise RestartingError
        chosen, fallbacks = await self._choose(request, provider, preferred)
        for image in codec.images_of(request):
            await self.blobs.put(image.data)
        op = request.operation.value
        deadline = self.config.deadlines.get(op, self.settings.job_deadlines.get(op, self.settings.job_deadline_s))
        new = NewJob(subject=subject, origin=origin, operation=request.operation,
                     request=codec.encode(request), provider=chosen.name, cost=image_count(request),
                     channel_id=channel_id, parent_job_id=parent_job_id, deadline_s=deadline,
                     seed=getattr(request, "seed", None), extra={**(extra or {}), "fallbacks": fallbacks},
                     lease=Lease(self.owner, self.host, self.pid, self.settings.lease_seconds),
                     delivery_target=origin.value, withhold_nsfw=withhold_nsfw,
                     spend=await self.spend_reservation(request, [chosen.name, *fallbacks]))  # the spend caps
        try:
            job = await self.store.create_job(new, defaults=self.defaults, now=self.clock())
        except QuotaError as exc:
            metrics.REFUSALS.labels(metrics.bounded(exc.kind, metrics.REFUSAL_REASONS)).inc()
            raise
        metrics.JOBS_STARTED.labels(metrics.bounded(job.operation, metrics.OPERATIONS),
                                    metrics.bounded(job.provider, metrics.PROVIDERS)).inc()
        # What this task logs from here on is about the job (its status post, its answer to the member).
        logs.set_job(job.id, job.provider, job.subject.scope)
        log.log(lifecycle_level(job), "job %s recorded: %s at %s", job.id, job.operation, job.provider)
        try:
            if prepare is not None:
                await prepare(job)
        except Exception:
            log.exception("job %s: preparing where it is shown failed; it runs anyway", job.id)
        finally:
            # Also when cancelled part way: a job leased to this live process would otherwise never start.
            if start:
                await self._start_new(job)
        return job

    async def _start_new(self, job: Job) -> None:
        """Run the new job here, or hand it to the processes sharing the store (RunnerConfig.hand_off)."""
        if self.shared is not None and self.config.hand_off:
            try:
                await self.store.release(job.id, self.owner)
                await self.shared.announce_free_work()
            except Exception:
                # Still ours or free: running it here is always safe (a claim by another process would have
                # made ours fail, and this one's lease is re-taken by the claim below).
                log.exception("job %s: handing it to another process failed; it runs here", job.id)
            else:
                return
            if not await self._claim(job.id):
                return
        self._spawn(job.id)

    async def rerun(self, job_id: int, subject: Subject, *, vary: bool, origin: Origin = Origin.DISCORD,
                    channel_id: str | None = None, extra: Mapping[str, Any] | None = None,
                    preferred: Sequence[str] | None = None, start: bool = True,
                    prepare: Prepare | None = None, withhold_nsfw: bool = False,
                    changes: Mapping[str, Any] | None = None) -> Job:
        """Retry (the same request), vary (a new random seed) or remix (`changes`: new values for the request's
        fields, such as a prompt or a size, checked like a new job's) any job, as `subject`'s new job."""
        original = await self.store.get_job(job_id)
        if original is None:
            raise JobNotFoundError(f"There is no job {job_id}.")
        try:
            request = await codec.decode(original.request, self.blobs)
        except (FileNotFoundError, KeyError, ValueError) as exc:  # KeyError: its member was forgotten
            raise InputError(f"Job {job_id}'s input images are no longer kept, so it cannot be run again.") from exc
        if vary and isinstance(request, EditRequest | ImagineRequest):
            request = replace(request, seed=random.randint(0, 2**31 - 1))
        if changes:
            try:
                request = replace(request, **changes)
            except TypeError as exc:  # a field this operation does not have: the caller's mistake, not the member's
                raise ValueError(f"job {job_id}: {request.operation.value} has no field among {sorted(changes)}") \
                    from exc
        return await self.create(subject, origin, request, provider=await self._original_provider(original, request),
                                 preferred=preferred, channel_id=channel_id or original.channel_id,
                                 parent_job_id=original.id, extra=extra, start=start, prepare=prepare,
                                 withhold_nsfw=withhold_nsfw)

    async def _original_provider(self, original: Job, request: Request) -> str | None:
        """The original provider if it is still configured, can take the request and its model was not found
        retired since; else None, and the order decides, as for a new job."""
        if original.provider not in self.providers:
            return None
        provider = self.providers.get(original.provider)
        try:
            await provider.validate(request)
        except (InputError, ConfigError, ProviderError):
            return None
        if await self._retired_until(provider) is not None:
            return None
        return provider.name

    async def resume(self, job_id: int) -> bool:
        """Take over one job explicitly (`atelier job resume`): False if a live process holds it."""
        if not await self._claim(job_id):
            return False
        job = await self.store.get_job(job_id)
        if job is None:
            return False
        deliverer = self.deliverers.get(job.origin.value)
        if job.state.terminal and deliverer is not None and await self.store.is_delivered(job.id, job.origin.value):
            await deliverer.deliver(job)  # asked for again: the receiver gets it again
            await self.store.release(job.id, self.owner)
            return True
        if job.id not in self._live:
            self._spawn(job.id)
        return True

    async def usage(self, subject: Subject) -> QuotaUsage:
        return await self.store.usage(subject, defaults=self.defaults, now=self.clock())

    async def wait(self, job_id: int) -> None:
        live = self._live.get(job_id)
        if live is not None:
            await asyncio.shield(live.task)

    def place_in_line(self, job: Job) -> int | None:
        gate = self.gates.get(job.provider)
        return gate.position(job.id) if gate else None
