"""Calling back like a provider does: once a job ends, POST an event to the URL given at submit, retrying on a
non-2xx answer or a timeout. Shared by the fakes of the providers that offer webhooks (fal, Novita)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp

from tests.fakes.base import FakeJob

log = logging.getLogger(__name__)


@dataclass
class WebhookDelivery:
    url: str
    body: dict[str, Any]
    status: int | None = None  # None: the delivery failed before any answer
    error: str | None = None


class SendsWebhooks:
    """Mixin for a FakeServer. Knobs are attributes so tests can turn them per scenario."""

    def init_webhooks(self) -> None:
        # Real providers time out after 5-15 s and retry several times; tests use shorter waits.
        self.webhook_timeout_s = 2.0
        self.webhook_retries = 5
        self.webhook_retry_delay_s = 0.05
        self.webhook_tick_s = 0.02  # how fast a poll-driven job advances when nobody polls it
        self.webhooks_enabled = True  # False: accept the URL but never call it (a provider that ignores it)
        self.webhook_deliveries: list[WebhookDelivery] = []
        self._webhook_tasks: set[asyncio.Task[None]] = set()
        self._webhook_client: aiohttp.ClientSession | None = None

    async def stop_webhooks(self) -> None:
        for task in list(self._webhook_tasks):
            task.cancel()
        await asyncio.gather(*self._webhook_tasks, return_exceptions=True)
        if self._webhook_client is not None:
            await self._webhook_client.close()
            self._webhook_client = None

    def track(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro, name="fake-webhook")
        self._webhook_tasks.add(task)
        task.add_done_callback(self._webhook_task_done)

    def _webhook_task_done(self, task: asyncio.Task[None]) -> None:
        self._webhook_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("fake webhook task failed", exc_info=task.exception())

    async def until_ended(self, job: FakeJob, ended: Callable[[FakeJob], bool]) -> None:
        """Wait for the job's end: sleep to its end time when time-driven, else advance it tick by tick."""
        if job.script.duration_s is not None and job.script.outcome != "never":
            await asyncio.sleep(max(0.0, job.created + job.script.duration_s - time.monotonic()))
        while not ended(job):
            await asyncio.sleep(self.webhook_tick_s)
            if job.script.duration_s is None:
                job.polls += 1  # poll-driven scripts advance on each look; with a webhook nobody needs to look

    async def post_event(self, url: str, event: dict[str, Any],
                         sign: Callable[[bytes], dict[str, str]] | None = None) -> None:
        if not self.webhooks_enabled:
            return
        if self._webhook_client is None:
            self._webhook_client = aiohttp.ClientSession()
        body = json.dumps(event).encode()
        timeout = aiohttp.ClientTimeout(total=self.webhook_timeout_s)
        for attempt in range(1 + self.webhook_retries):
            # Signed afresh on each attempt, as the timestamp is part of what is signed.
            headers = {"Content-Type": "application/json", **(sign(body) if sign else {})}
            delivery = WebhookDelivery(url=url, body=event, error="no answer")
            with contextlib.suppress(TimeoutError, aiohttp.ClientError):
                async with self._webhook_client.post(url, data=body, headers=headers, timeout=timeout) as resp:
                    delivery.status, delivery.error = resp.status, None
            # Logged once the attempt has an outcome, so tests never see one still in flight.
            self.webhook_deliveries.append(delivery)
            if delivery.status is not None and 200 <= delivery.status < 300:
                return
            if attempt < self.webhook_retries:
                await asyncio.sleep(self.webhook_retry_delay_s)
