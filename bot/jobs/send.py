"""The paid step on the wire: send a job's submit and store what came back as one step a cancel cannot cut in
half — an asynchronous provider's handle, or a synchronous call's images (bot.providers.synchronous)."""

from __future__ import annotations

import asyncio
import logging

from bot.jobs.conclude import Concluding
from bot.jobs.events import JobEvent
from bot.operations import Request
from bot.providers.base import Provider
from bot.providers.polling import cancel_quietly
from bot.providers.status import Running
from bot.providers.synchronous import SynchronousCallInterrupted, placeholder
from bot.store.models import Job, JobState

log = logging.getLogger(__name__)


class Sending(Concluding):
    async def _send_shielded(self, job_id: int, provider: Provider, request: Request) -> Job | None:
        """Send the paid submit and store its handle as one step that a cancel cannot cut in half: once the
        request may be on the wire, losing its handle would leave a billed job nobody follows."""
        send = asyncio.ensure_future(self._send(job_id, provider, request))
        self._submits.add(send)
        if (live := self._live.get(job_id)) is not None:
            live.send = send

        def settled(task: asyncio.Future[Job | None]) -> None:
            self._submits.discard(task)
            if not task.cancelled() and task.exception() is not None:
                log.debug("submit of job %s ended with %r", job_id, task.exception())

        send.add_done_callback(settled)
        return await asyncio.shield(send)

    async def _send(self, job_id: int, provider: Provider, request: Request) -> Job | None:
        if provider.synchronous:
            return await self._send_synchronous(job_id, provider, request)
        handle = await self.external_wait(provider.submit(request), reason=f"{provider.name} submit")
        stored = await self.store.transition(job_id, JobState.QUEUED, now=self.clock(),
                                             handle=handle, submitted_at=self.clock())
        if stored is None:  # cancelled while the submit was on the wire: cancel it there too
            await cancel_quietly(provider, handle)
            return None
        self._live_handle(job_id, handle, provider)
        self._submitted_here.add(job_id)
        return stored

    async def _send_synchronous(self, job_id: int, provider: Provider, request: Request) -> Job | None:
        """A call whose own answer carries the images. Before it is sent the job is shown as running, with a
        placeholder handle: a restart that finds the placeholder ends the job as interrupted (bot.providers.
        synchronous). The answer then replaces the placeholder, so a restart after it still delivers."""
        sending = placeholder(provider.name, job_id, request.operation.value)
        running = await self.store.transition(job_id, JobState.RUNNING, now=self.clock(),
                                              handle=sending, submitted_at=self.clock())
        if running is None:  # cancelled before the call
            return None
        await self._emit(JobEvent("progress", running, status=Running()))
        try:
            handle = await self.external_wait(provider.submit(request), reason=f"{provider.name} call")
        except SynchronousCallInterrupted:
            raise
        except Exception:
            # Answered with an error, or never sent: nothing is on the wire, so the submit step's own rules
            # decide (the next provider, or a failure).
            await self.store.transition(job_id, JobState.SUBMITTING, now=self.clock(), handle=None,
                                        submitted_at=None)
            raise
        stored = await self.store.transition(job_id, JobState.RUNNING, now=self.clock(), handle=handle)
        if stored is None:  # cancelled during the call: nothing to cancel there, the images are not wanted
            return None
        self._live_handle(job_id, handle, provider)
        self._submitted_here.add(job_id)
        return stored
