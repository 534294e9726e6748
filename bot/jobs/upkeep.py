"""Background upkeep of a runner: renewing this process's job leases, and pruning old images."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from bot.errors import StoreBusyError
from bot.jobs.core import RunnerCore
from bot.jobs.slots import SharedGate
from bot.store.base import SharedJobStore
from bot.store.channels import JOBS_CHANNEL, SLOTS_CHANNEL

log = logging.getLogger(__name__)

HOUSEKEEPING_S = 3600.0
# Longer than any job takes from storing an image to recording it (inputs: milliseconds; outputs: the download).
BLOB_WRITE_GRACE = timedelta(days=1)
WEBHOOK_INBOX_KEEP = timedelta(days=1)


class Upkeep(RunnerCore):
    async def _heartbeat(self) -> None:
        interval = max(0.5, self.settings.lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.store.renew_leases(self.owner, now=self.clock(), lease_s=self.settings.lease_seconds)
                if self.shared is not None:
                    self._share_request_rate(await self.shared.live_processes())
            except StoreBusyError as exc:  # another program holds the database: expected, and no bug here
                log.warning("renewing job leases: %s", exc)
            except Exception:
                # Leases last three intervals, so one failed renewal loses nothing; keep trying.
                log.exception("renewing job leases failed")

    def _share_request_rate(self, processes: int) -> None:
        """PROVIDER_REQUESTS_PER_SECOND is the key's budget: split it evenly among the live processes."""
        if processes == self.rate_share:
            return
        self.rate_share = processes
        for provider in self.providers:
            if provider.http is not None:
                provider.http.share_rate(processes)

    def _listen_to_others(self, store: SharedJobStore) -> None:
        """What other processes on a shared store tell this one: a slot came free, a job needs a process."""

        def slot_freed(provider: str) -> None:
            gate = self.gates.get(provider)
            if isinstance(gate, SharedGate):
                gate.slot_freed()

        def reconnected() -> None:
            for gate in self.gates.values():
                if isinstance(gate, SharedGate):
                    gate.slot_freed()
            self._adopt_soon()

        store.subscribe(SLOTS_CHANNEL, slot_freed)
        store.subscribe(JOBS_CHANNEL, lambda _: self._adopt_soon())
        store.on_reconnect(reconnected)

    def _adopt_soon(self) -> None:
        """Look for work nobody holds (once more if a look is already under way: it may have started too early)."""
        if not self.config.adopt or self._stopping:
            return
        self._adopt_again = True
        if self._adopting:
            return
        self._adopting = True

        async def adopt() -> None:
            try:
                while self._adopt_again:
                    self._adopt_again = False
                    await self.adopt()
            finally:
                self._adopting = False

        self.tasks.spawn(adopt(), name="adopt")

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
        if self.shared is not None:
            await self.shared.prune_webhooks(received_before=self.clock() - WEBHOOK_INBOX_KEEP)
            await self.shared.prune_processes()
        return pruned
