"""How a job ends: the provider's outcome recorded (a success's images downloaded and stored first), the refund
rule applied and a delivery owed — each step idempotent, so a job recovered after a crash anywhere in here ends
the same way."""

from __future__ import annotations

import asyncio
import logging
from typing import assert_never

from bot.errors import OutputError
from bot.jobs.events import JobEvent
from bot.jobs.money import Spending
from bot.providers.base import Provider
from bot.providers.status import Cancelled, Failed, Succeeded
from bot.redaction import redact
from bot.store.models import Job, JobState, Origin, StoredOutput
from bot.store.refunds import images_charged, refund_due

log = logging.getLogger(__name__)

# Downloads get what is left of the job's deadline, but at least this: the images exist and are paid for.
FETCH_MIN_S = 60.0


class Concluding(Spending):
    async def _conclude(self, job: Job, provider: Provider, result: Succeeded | Failed | Cancelled) -> Job:
        match result:
            case Failed():
                return await self._fail(job, result.reason, code=result.code or "failed", charged=result.charged)
            case Cancelled():
                cancelled = await self.store.transition(job.id, JobState.CANCELLED, now=self.clock(),
                                                        error_code="cancelled", error_message=result.reason,
                                                        finished_at=self.clock())
                return await self._finish(cancelled) if cancelled else await self._reload(job)
            case Succeeded():
                return await self._succeed(job, provider, result)
            case _:
                assert_never(result)

    async def _succeed(self, job: Job, provider: Provider, result: Succeeded) -> Job:
        fetching = await self.store.transition(job.id, JobState.FETCHING, now=self.clock())
        if fetching is None:
            return await self._reload(job)
        budget = max(FETCH_MIN_S, (job.deadline_at - self.clock()).total_seconds())
        try:
            async with asyncio.timeout(budget):
                outputs = await self._download(provider, result)
        except OutputError as exc:
            return await self._fail(fetching, str(exc), code="output", charged=True)
        except TimeoutError:
            return await self._fail(fetching, "the images could not be downloaded in time", code="output",
                                    charged=True)
        done = await self.store.transition(job.id, JobState.SUCCEEDED, now=self.clock(), outputs=tuple(outputs),
                                           finished_at=self.clock(), charged=True,
                                           seed=result.seed if result.seed is not None else fetching.seed)
        return await self._finish(done) if done else await self._reload(job)

    async def _download(self, provider: Provider, result: Succeeded) -> list[StoredOutput]:
        outputs: list[StoredOutput] = []
        for output in result.outputs:
            image = await self.external_wait(provider.fetch(output), reason=f"{provider.name} download")
            digest, path = await self.blobs.put(image.data)
            outputs.append(StoredOutput(sha256=digest, mime=image.mime, width=image.width, height=image.height,
                                        provider_url=output.url, nsfw=image.nsfw, path=str(path)))
        return outputs

    async def _fail(self, job: Job, reason: str, *, code: str, charged: bool | None) -> Job:
        failed = await self.store.transition(job.id, JobState.FAILED, now=self.clock(), error_code=code,
                                             error_message=redact(reason)[:1000], charged=charged,
                                             finished_at=self.clock())
        if failed is None:
            return await self._reload(job)
        return await self._finish(failed)

    async def _finish(self, job: Job, *, announce: bool = True) -> Job:
        """A job just became terminal: apply the refund rule and owe a delivery (both idempotent, so a job
        recovered after a crash at any point in here is finished the same way)."""
        job = await self._settle(job)
        await self.store.enqueue_delivery(job.id, job.origin.value, now=self.clock())
        # One line per job's end, for the operator's log (the job's id, provider and guild come with it).
        log.log(lifecycle_level(job), "job %s %s%s", job.id, job.state.value,
                f": {job.error_message}" if job.error_message else "")
        if announce:
            await self._emit(JobEvent("finished", job))
        return job

    async def _settle(self, job: Job) -> Job:
        """Charge the finished job what its member got (bot.store.refunds); idempotent."""
        if refund_due(job) and await self.store.settle_cost(job.id, images=images_charged(job), now=self.clock()):
            job = await self._reload(job)
        await self._settle_spend(job)  # its money reservation, by the same rule
        return job


def lifecycle_level(job: Job) -> int:
    """A job's start and end are news in a long-running process's log; the command line already prints the job's
    own JSON line, so there they are DEBUG."""
    return logging.DEBUG if job.origin is Origin.CLI else logging.INFO
