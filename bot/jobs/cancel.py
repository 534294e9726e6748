"""Cancelling a job: recorded first (so its worker, a submit on the wire and the provider all find it
cancelled), then stopped here and at the provider where its API allows, refunded by the one refund rule."""

from __future__ import annotations

from bot.errors import AtelierError, InputError
from bot.jobs.outbox import Outbox
from bot.providers.polling import cancel_quietly
from bot.providers.synchronous import is_synchronous
from bot.store.models import Job, JobState, Subject


class JobNotFoundError(AtelierError):
    pass


class Cancelling(Outbox):
    async def cancel(self, job_id: int, subject: Subject | None, *, reason: str = "cancelled") -> Job:
        """Cancel a job (subject None = an operator). Queued locally: dropped; at the provider: cancelled
        there where the API allows. Refunded by the one refund rule."""
        job = await self.store.get_job(job_id)
        if job is None or (subject is not None and (job.subject.scope, job.subject.user_id)
                           != (subject.scope, subject.user_id)):
            raise JobNotFoundError(f"You have no job {job_id}.")
        if job.state.terminal:
            raise InputError(f"Job {job_id} has already {job.state.value}.")
        done = await self.store.transition(job_id, JobState.CANCELLED, now=self.clock(), error_code="cancelled",
                                           error_message=reason, finished_at=self.clock())
        if done is None:
            return await self._reload(job)
        live = self._live.get(job_id)
        if live is not None:
            # A submit already on the wire is shielded: it finishes, finds the job cancelled, and cancels it
            # at the provider.
            live.task.cancel()
            if live.send is not None and is_synchronous(done.handle):
                # A synchronous call cannot be cancelled there and its answer is not wanted: stop waiting for it.
                live.send.cancel()
        if done.handle is not None and done.handle.provider in self.providers:
            await cancel_quietly(self.providers.get(done.handle.provider), done.handle)
        done = await self._finish(done)
        if done.origin.value in self.deliverers and await self._claim(job_id):
            await self._deliver_now(done)
        return done

    async def cancel_at_provider(self, job_id: int) -> bool:
        """Stop a job of this process at once without recording it (the store is locked by another program and
        the user asked to stop): its worker is cancelled and the job cancelled at the provider where the API
        allows. The row stays unfinished, leased to this process; once this process is gone, `recover_abandoned`
        settles it. True when the provider accepted the cancel."""
        live = self._live.get(job_id)
        if live is None:
            return False
        live.task.cancel()
        if live.handle is None or live.provider is None:
            return False
        return await cancel_quietly(live.provider, live.handle)
