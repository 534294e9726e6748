"""The walk of one job, by the one task this process runs for it: from its stored state to its end and its
delivery. Each step's result is written before the next starts, so a restarted process resumes from the stored
state:
- pending: submit (it never was);
- submitting: the submit may have reached the provider but its handle was not stored: fail it as "interrupted"
  and refund, rather than risk paying twice (the local provider is free, so it just runs again);
- queued/running/fetching: poll the stored handle (a synchronous call's handle holds its outcome);
- finished with a delivery owed: deliver.
"""

from __future__ import annotations

import asyncio
import logging

from bot.jobs.follow import Following
from bot.jobs.outbox import Outbox
from bot.jobs.submit import Submitting
from bot.ops import logs
from bot.providers.synchronous import is_synchronous
from bot.store import fencing, patience
from bot.store.fencing import LeaseLostError
from bot.store.models import Job, JobState

log = logging.getLogger(__name__)

# States in which a job may already be at its provider.
_SENT_STATES = frozenset({JobState.SUBMITTING, JobState.QUEUED, JobState.RUNNING, JobState.FETCHING})


class Walking(Submitting, Following, Outbox):
    async def _work(self, job_id: int) -> None:
        # Everything this task writes about the job is fenced by our lease (bot.store.fencing).
        fencing.work_as(self.owner)
        try:
            await self._walk(job_id)
        except LeaseLostError:
            # We stalled past our lease and another process took the job over: it is theirs now, and nothing more
            # is written or sent about it from here.
            log.warning("job %s: taken over by another process while this one was stalled; leaving it to them",
                        job_id)

    async def _walk(self, job_id: int) -> None:
        job = await self.store.get_job(job_id)
        if job is None:
            return
        logs.set_job(job.id, job.provider, job.subject.scope)  # this task's log lines name the job
        self._note(job)
        # A database locked by another program (a backup, a VACUUM) must not kill a paid job: its store calls
        # wait until its own deadline (and at least the store's usual patience, for the last writes).
        patience.be_patient_for(max((job.deadline_at - self.clock()).total_seconds(),
                                    self.settings.database_busy_timeout_s))
        try:
            if not job.state.terminal:
                job = await self._advance(job)
            elif not await self.store.is_delivered(job.id, job.origin.value):
                # Finished before a crash: the refund and the delivery may not have been written yet.
                job = await self._finish(job, announce=False)
            if job.state.terminal:
                await self._deliver_now(job)
        except (asyncio.CancelledError, LeaseLostError):
            raise
        except Exception:
            log.exception("job %s crashed in state %s", job_id, job.state)
            latest = await self.store.get_job(job_id)
            if latest is not None and not latest.state.terminal:
                failed = await self._fail(latest, "an internal error stopped this job", code="internal",
                                          charged=None)
                await self._deliver_now(failed)

    async def _advance(self, job: Job) -> Job:
        provider = self.providers.get(job.provider) if job.provider in self.providers else None
        if provider is None:
            return await self._fail(job, f"the provider {job.provider} is no longer configured", code="config",
                                    charged=False)
        if job.state in _SENT_STATES and provider.free_to_resubmit:
            job = await self._reset_free_job(job)
        if job.state is JobState.SUBMITTING:
            # We died between sending the submit and storing its handle: it may be running (and billed) at
            # the provider. Sending it again could charge twice, so it ends here, refunded.
            return await self._fail(job, "interrupted: Atelier restarted while sending this job; it was not "
                                    "sent again so that it cannot be charged twice", code="interrupted",
                                    charged=None)
        if job.state is JobState.PENDING:
            submitted = await self._submit(job, provider)
            if submitted is None:
                return await self._reload(job)
            job, provider = submitted
            self._note(job)
            if job.state.terminal:
                return job
        else:
            # Resumed after a restart: the job is already at the provider, so it takes a slot without waiting.
            self.gates[provider.name].occupy()
        if is_synchronous(job.handle):
            return await self._settle_synchronous(job, provider)  # gives the slot back too
        return await self._follow(job, provider)  # gives the slot back, whatever happens

    async def _reset_free_job(self, job: Job) -> Job:
        reset = await self.store.transition(job.id, JobState.PENDING, now=self.clock(), handle=None)
        return reset or await self._reload(job)
