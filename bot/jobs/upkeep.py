"""Background upkeep of a runner: renewing this process's job leases, and pruning old images."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from bot.errors import StoreBusyError
from bot.jobs.core import RunnerCore

log = logging.getLogger(__name__)

HOUSEKEEPING_S = 3600.0
# Longer than any job takes from storing an image to recording it (inputs: milliseconds; outputs: the download).
BLOB_WRITE_GRACE = timedelta(days=1)


class Upkeep(RunnerCore):
    async def _heartbeat(self) -> None:
        interval = max(0.5, self.settings.lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.store.renew_leases(self.owner, now=self.clock(), lease_s=self.settings.lease_seconds)
            except StoreBusyError as exc:  # another program holds the database: expected, and no bug here
                log.warning("renewing job leases: %s", exc)
            except Exception:
                # Leases last three intervals, so one failed renewal loses nothing; keep trying.
                log.exception("renewing job leases failed")

    async def _housekeeping_loop(self) -> None:
        while True:
            try:
                await self.prune()
            except Exception:
                log.exception("pruning old job files failed")
            await asyncio.sleep(HOUSEKEEPING_S)

    async def prune(self) -> int:
        """Delete local copies of images of jobs finished more than RETENTION_DAYS ago, unless a job inside
        retention uses the same image; rows stay. Returns the number of files deleted."""
        cutoff = self.clock() - timedelta(days=self.settings.retention_days)
        candidates = await self.store.prunable_outputs(finished_before=cutoff)
        # Blobs are shared by content: an image a newer job still uses (as an input or an output) stays.
        in_use = await self.store.blobs_in_use(sorted({o.sha256 for _, o in candidates}), finished_before=cutoff)
        pruned = 0
        for sha256 in sorted({o.sha256 for _, o in candidates} - in_use):
            # A blob written (or written again) lately may belong to a job whose row is not committed yet.
            pruned += await self.blobs.delete_unless_written_since(sha256, self.clock() - BLOB_WRITE_GRACE)
        for job_id in sorted({job_id for job_id, _ in candidates}):
            await self.store.mark_outputs_pruned(job_id)
        return pruned
