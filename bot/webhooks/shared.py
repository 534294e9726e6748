"""Webhook calls across processes that share a store (PostgreSQL).

A provider calls whichever process its load balancer picks, while the job may be followed by another. A call no job
here waits for is recorded in the store's inbox (the store keeps only calls about jobs it knows to be at that
provider, so a flood of made-up ids writes nothing) and announced with NOTIFY; every process hands it to its own hub,
which wakes the job's poll loop (the loop then asks the provider: a forwarded call carries no outcome) or keeps it
briefly for a job about to be followed. NOTIFY is lost when nobody listens, and a PostgreSQL restart drops every
listener: a periodic scan of the inbox, and one after each reconnect, catches what was missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from bot.providers.status import Terminal
from bot.store.base import SharedJobStore
from bot.store.channels import WEBHOOKS_CHANNEL
from bot.tasks import TaskSet
from bot.webhooks import outcomes
from bot.webhooks.hub import WebhookHub

log = logging.getLogger(__name__)

SCAN_S = 5.0
# Calls received this long before a process starts may still concern a job it resumes.
LOOKBACK = timedelta(minutes=10)
KEEP = timedelta(days=1)
MAX_FORWARDS_IN_FLIGHT = 1000


class SharedWebhooks:
    def __init__(self, hub: WebhookHub, store: SharedJobStore, *, clock: Callable[[], datetime]) -> None:
        self.hub = hub
        self.store = store
        self.clock = clock
        self._tasks = TaskSet("shared-webhooks")
        self._forwards = 0
        self._last_id = 0
        self._rescan = asyncio.Event()
        hub.forward = self._forward
        store.subscribe(WEBHOOKS_CHANNEL, self._notified)
        store.on_reconnect(self._rescan.set)

    async def start(self) -> None:
        self._last_id = await self.store.newest_webhook_id(received_before=self.clock() - LOOKBACK)
        self._tasks.spawn(self._scan_loop(), name="inbox-scan")

    async def close(self) -> None:
        await self._tasks.close()

    def _forward(self, provider: str, remote_id: str, verified: bool, outcome: Terminal | None) -> None:
        if self._forwards >= MAX_FORWARDS_IN_FLIGHT:
            log.warning("webhook calls arrive faster than the store takes them; one for %s was not passed on "
                        "(its job is polled anyway)", provider)
            return
        self._forwards += 1
        self._tasks.spawn(self._record(provider, remote_id, verified, outcomes.encode(outcome)), name="forward")

    async def _record(self, provider: str, remote_id: str, verified: bool, outcome: dict[str, Any] | None) -> None:
        try:
            await self.store.record_webhook(provider, remote_id, verified=verified, outcome=outcome)
        finally:
            self._forwards -= 1

    def _notified(self, payload: str) -> None:
        provider, remote_id, verified, call_id = [*payload.split(" "), "", "", "", ""][:4]
        if not provider or not remote_id:
            return
        if verified == "outcome" and call_id.isdigit() and self.hub.waiting_for(provider, remote_id):
            # The outcome is in the inbox row: read it rather than ask the provider (only if a job here waits).
            self._tasks.spawn(self._with_outcome(int(call_id), provider, remote_id), name="outcome")
            return
        self.hub.notify(provider, remote_id, forwarded=True, verified=verified in ("verified", "outcome"))

    async def _with_outcome(self, call_id: int, provider: str, remote_id: str) -> None:
        outcome: Terminal | None = None
        try:
            outcome = outcomes.decode(await self.store.webhook_outcome(call_id))
        except Exception as exc:  # the job still wakes, and asks the provider itself
            log.warning("reading a webhook call's outcome failed: %s", exc)
        self.hub.notify(provider, remote_id, outcome, forwarded=True, verified=True)

    async def _scan_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rescan.wait(), SCAN_S)
            self._rescan.clear()
            try:
                await self.scan()
            except Exception:
                log.exception("scanning the webhook inbox failed; trying again in %.0f s", SCAN_S)

    async def scan(self) -> int:
        """Hand every call recorded since the last scan to the hub; returns how many."""
        calls = await self.store.webhooks_after(self._last_id)
        for call_id, provider, remote_id, verified, outcome in calls:
            self.hub.notify(provider, remote_id, outcomes.decode(outcome), forwarded=True, verified=verified)
            self._last_id = max(self._last_id, call_id)
        return len(calls)

    async def prune(self) -> int:
        return await self.store.prune_webhooks(received_before=self.clock() - KEEP)
