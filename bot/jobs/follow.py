"""Following a job at its provider: the one poll loop (bot.providers.polling) fed with what this process knows —
recent durations, the provider's request budget, a webhook call when one is due — and each status it reports
recorded; then the outcome concluded. A synchronous call's outcome is already in its handle."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import assert_never

from bot.jobs.conclude import Concluding
from bot.jobs.events import JobEvent
from bot.providers.base import Provider
from bot.providers.hints import CompletionHint
from bot.providers.polling import wait_for_result
from bot.providers.status import Cancelled, Failed, JobStatus, Queued, RemoteHandle, Running, Succeeded, Terminal
from bot.providers.synchronous import settle
from bot.store.models import Job, JobState


@dataclass
class _Followed:
    job: Job  # as last recorded
    handle: RemoteHandle
    fresh: bool  # submitted by this process: its duration is an honest sample, and its webhook call still due
    reported_end: bool = False  # the provider itself said the job ended (not our deadline or a broken answer)


class Following(Concluding):
    async def _follow(self, job: Job, provider: Provider) -> Job:
        """Poll the job to its end and conclude it; gives the provider slot back, whatever happens."""
        gate = self.gates[provider.name]
        handle = job.handle
        if handle is None:
            gate.release()
            raise AssertionError(f"job {job.id} is followed without a handle")
        self._live_handle(job.id, handle, provider)
        followed = _Followed(job=job, handle=handle, fresh=job.id in self._submitted_here)
        remaining = (job.deadline_at - self.clock()).total_seconds()
        hint = self._expect_call(provider, followed)
        self._following[provider.name] = self._following.get(provider.name, 0) + 1
        try:
            result = await wait_for_result(provider, handle, deadline=time.monotonic() + remaining,
                                           external_wait=self.external_wait, schedule=self.schedule,
                                           on_status=lambda status: self._on_status(followed, status),
                                           learned=self.durations.estimate(provider.name, handle.operation),
                                           min_interval=lambda: self._poll_spacing(provider.name), hint=hint)
        except asyncio.CancelledError:
            latest = await self._reload(job)
            if latest.state is JobState.CANCELLED:
                return latest
            raise
        finally:
            gate.release()
            self._submitted_here.discard(job.id)
            self._following[provider.name] -= 1
            if hint is not None and self.webhooks is not None:
                self.webhooks.forget(provider.name, handle.remote_id,
                                     ended_by_webhook=self._ended_by_webhook(hint, followed))
        self._learn_duration(job, provider, followed, result)
        return await self._conclude(followed.job, provider, result)

    def _expect_call(self, provider: Provider, followed: _Followed) -> CompletionHint | None:
        """The hint a webhook call will set, when one is due: the job was submitted asking for one, at the URL
        this process listens on now."""
        if self.webhooks is None or not provider.webhook_url \
                or followed.handle.extra.get("webhook") != provider.webhook_url:
            return None
        hint = self.webhooks.expect(provider.name, followed.handle.remote_id)
        if not followed.fresh:
            # Resumed after a restart: its call may have come while nobody listened, so look once now rather
            # than waiting for the first safety-net poll.
            hint.look_now()
        return hint

    async def _on_status(self, followed: _Followed, status: JobStatus) -> None:
        match status:
            case Queued() | Running():
                followed.reported_end = False
                followed.job = await self._record_progress(followed.job, status)
                await self._emit(JobEvent("progress", followed.job, status=status))
            case Succeeded() | Failed():
                followed.reported_end = True
            case Cancelled():
                followed.reported_end = False
            case _:
                assert_never(status)

    async def _record_progress(self, job: Job, status: Queued | Running) -> Job:
        """Write what the provider reports, when it changed; a job cancelled elsewhere stops being followed."""
        match status:
            case Queued():
                to, changed = JobState.QUEUED, job.queue_position != status.position
                fields: dict[str, float | int | None] = {"queue_position": status.position}
            case Running():
                to, changed = JobState.RUNNING, job.progress != status.progress
                fields = {"progress": status.progress}
            case _:
                assert_never(status)
        if job.state is to and not changed:
            return job
        updated = await self.store.transition(job.id, to, now=self.clock(), **fields)
        if updated is None:
            raise asyncio.CancelledError  # cancelled elsewhere: stop following
        return updated

    def _learn_duration(self, job: Job, provider: Provider, followed: _Followed, result: Terminal) -> None:
        if isinstance(result, Succeeded) and job.submitted_at is not None and followed.fresh:
            self.durations.record(provider.name, followed.handle.operation,
                                  (self.clock() - job.submitted_at).total_seconds())

    @staticmethod
    def _ended_by_webhook(hint: CompletionHint, followed: _Followed) -> bool | None:
        """Did the provider's call announce this job's end? None where the answer says nothing about whether
        calls arrive: the job was cancelled or expired here, or it ended while this process was not running."""
        if hint.fired:
            return True
        return False if followed.fresh and followed.reported_end else None

    def _poll_spacing(self, provider: str) -> float:
        """The shortest gap between two polls of one job that keeps all followed jobs of this provider within
        80% of its request budget (the rest is for submits and downloads); 0 when there is no budget."""
        rate = self.settings.provider_requests_per_second / self.rate_share  # this process's share of the key's
        if not rate:
            return 0.0
        return self._following.get(provider, 0) / (rate * 0.8)

    async def _settle_synchronous(self, job: Job, provider: Provider) -> Job:
        """A synchronous call's outcome is in its stored handle (nothing to poll): the images that came back, or,
        for a placeholder a restart found, an interruption that is refunded and never sent again."""
        self.gates[provider.name].release()
        self._submitted_here.discard(job.id)
        handle = job.handle
        assert handle is not None
        result = settle(handle, interrupted_because=f"Atelier stopped during the call to {handle.provider}")
        return await self._conclude(job, provider, result)
