"""Settling command-line jobs whose `atelier` process is gone: no long-running process adopts them, so the next
one-shot command ends each by what can be known without waiting, and frees its member's slots."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bot.errors import AtelierError, ProviderError
from bot.jobs.cancel import Cancelling
from bot.providers.status import Cancelled, Failed, Succeeded
from bot.store.leases import pid_alive
from bot.store.models import Job, JobState, Origin

log = logging.getLogger(__name__)


class Recovering(Cancelling):
    async def recover_abandoned(self, origin: Origin, *, exclude: Sequence[int] = ()) -> list[Job]:
        """Settle the unfinished jobs of `origin` whose process is gone (same host and its pid gone, or its lease
        lapsed), so that they stop holding their member's slots. Used by one-shot commands for command-line
        jobs, which no long-running process adopts. Each job ends here, by what can be known without waiting:
        - never sent: cancelled (nothing was sent, nothing is charged);
        - its submit may be on the wire: failed as "interrupted", exactly as a restarted runner fails it;
        - at the provider: looked at once. Finished there: its result is downloaded and kept (`atelier job
          resume ID` writes the images); failed there: failed; still running: cancelled at the provider (as
          Ctrl-C would have) and refunded.
        Returns the settled jobs. `exclude`: jobs the caller is about to take over itself."""
        settled: list[Job] = []
        for job in await self.store.claimable([origin], now=self.clock(), host=self.host):
            if job.state.terminal or job.id in exclude or job.id in self._live or self._owner_alive_here(job):
                continue
            if not await self._claim(job.id):
                continue
            try:
                # Another command may have settled it between the list above and this claim: act on the job as
                # it is now, or a stale copy would settle it (and report it settled) a second time.
                current = await self.store.get_job(job.id)
                if current is None or current.state.terminal:
                    continue
                settled.append(await self._settle_abandoned(current))
            except (AtelierError, OSError) as exc:
                log.warning("could not settle abandoned job %s: %s", job.id, exc)
            finally:
                await self.store.release(job.id, self.owner)
        return settled

    def _owner_alive_here(self, job: Job) -> bool:
        """A lapsed lease whose process still runs on this machine (suspended with Ctrl-Z, say) is not
        abandoned: that process carries on when it is resumed. Owners are "host:pid:nonce"."""
        parts = (job.lease_owner or "").rsplit(":", 2)
        if len(parts) != 3 or not parts[1].isdigit() or parts[0] != self.host:
            return False
        return pid_alive(int(parts[1]))

    async def _settle_abandoned(self, job: Job) -> Job:
        gone = "the atelier process running it ended before it finished"
        provider = self.providers.get(job.provider) if job.provider in self.providers else None
        if job.state is JobState.SUBMITTING and not (provider and provider.free_to_resubmit):
            return await self._fail(job, f"interrupted: {gone}, while sending it; it was not sent again so "
                                    "that it cannot be charged twice", code="interrupted", charged=None)
        if provider is not None and not provider.free_to_resubmit and job.handle is not None:
            try:
                status = await self.external_wait(provider.poll(job.handle),
                                                  reason=f"{provider.name} status")
            except ProviderError as exc:
                log.warning("job %s: one look at %s failed (%s); cancelling it", job.id, provider.name, exc)
            else:
                if isinstance(status, Succeeded | Failed | Cancelled):
                    return await self._conclude(job, provider, status)
        return await self.cancel(job.id, None, reason=f"cancelled: {gone}")
