"""Submitting a job: wait for a slot at its provider, then send it — and when nothing was started there (a model
found retired, a rejected key, a provider down before the request left), move on to the next provider able to
take it. A submit that may have reached the provider is never sent again or elsewhere."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from bot import codec
from bot.errors import (
    AtelierError,
    ConfigError,
    ModelRetiredError,
    ProviderAuthError,
    ProviderError,
    ProviderUnavailableError,
)
from bot.fairqueue import FairGate
from bot.jobs.choice import Choosing
from bot.jobs.events import JobEvent
from bot.jobs.send import Sending
from bot.jobs.slots import SharedGate
from bot.operations import Request
from bot.providers.base import Provider
from bot.providers.synchronous import SynchronousCallInterrupted
from bot.store.models import Job, JobState

log = logging.getLogger(__name__)

# A waiting job asks for a shared slot again after this long even without a notification (one may be lost).
SHARED_SLOT_RECHECK_S = 1.0


@dataclass(frozen=True, slots=True)
class _TryNext:
    """Nothing was started at that provider: the job (back in PENDING) goes to the next one."""

    job: Job


class Submitting(Choosing, Sending):
    async def _submit(self, job: Job, provider: Provider) -> tuple[Job, Provider] | None:
        """The job at a provider (holding its slot, which _follow gives back), or ended; None if it was cancelled
        meanwhile."""
        request = await codec.decode(job.request, self.blobs)
        candidates = [provider] + [self.providers.get(n) for n in job.extra.get("fallbacks", [])
                                   if n in self.providers]
        for index, candidate in enumerate(candidates):
            following = candidates[index + 1].name if index + 1 < len(candidates) else None
            outcome = await self._submit_to(job, candidate, request, following)
            if not isinstance(outcome, _TryNext):
                return None if outcome is None else (outcome, candidate)
            job = outcome.job
        return None

    async def _submit_to(self, job: Job, candidate: Provider, request: Request,
                         following: str | None) -> Job | _TryNext | None:
        gate = self.gates[candidate.name]
        if isinstance(gate, SharedGate):
            return await self._submit_shared(job, candidate, request, following, gate)
        await self._wait_for_slot(job, gate)
        keep_slot = False  # kept only when the job is at the provider; _follow gives it back
        try:
            if self.draining:
                # After SIGTERM nothing new goes on the wire: the job stays pending, unsent, for the next process.
                await self.store.release(job.id, self.owner)
                return None
            if self.clock() >= job.deadline_at:
                # It waited in line past its deadline: fail it before paying for it.
                return await self._fail(job, "it waited in line past its deadline and was not sent",
                                        code="deadline", charged=False)
            # Compare-and-set: if the job was cancelled while it waited, nothing is sent.
            sending = await self.store.transition(job.id, JobState.SUBMITTING, now=self.clock(),
                                                  provider=candidate.name, attempts=job.attempts + 1)
            if sending is None:
                return None
            self._note(sending)
            try:
                stored = await self._send_shielded(job.id, candidate, request)
            except AtelierError as exc:
                return await self._refused(sending, candidate, exc, following)
            # None: cancelled while the submit was on the wire (and cancelled there).
            keep_slot = stored is not None
            return stored
        finally:
            if not keep_slot:
                gate.release()

    async def _submit_shared(self, job: Job, candidate: Provider, request: Request, following: str | None,
                             gate: SharedGate) -> Job | _TryNext | None:
        """As _submit_to, with the provider's slots shared by every process: taking a slot and moving the job to
        SUBMITTING are one step in the store, and leaving the provider's states gives the slot back."""
        sending = await self._take_shared_slot(job, candidate, gate)
        if not isinstance(sending, Job):
            if sending == "deadline":
                return await self._fail(job, "it waited in line past its deadline and was not sent",
                                        code="deadline", charged=False)
            return None
        try:
            return await self._send_shielded(job.id, candidate, request)
        except AtelierError as exc:
            return await self._refused(sending, candidate, exc, following)

    async def _take_shared_slot(self, job: Job, candidate: Provider, gate: SharedGate) -> Job | str | None:
        """The job in SUBMITTING holding a slot; "deadline" if it waited past its deadline; None if it was
        cancelled meanwhile. Asks again whenever a slot comes free anywhere, or every second."""
        assert self.shared is not None
        last: int | None = None
        try:
            while True:
                if self.clock() >= job.deadline_at:
                    await self.shared.leave_line(job.id)
                    return "deadline"
                taken = await self.shared.take_slot(job.id, candidate.name, capacity=gate.capacity,
                                                    attempts=job.attempts + 1, now=self.clock())
                if taken is None or isinstance(taken, Job):
                    return taken
                gate.wait_in_line(job.id, taken)
                if taken != last:
                    last = taken
                    await self._emit(JobEvent("waiting", job, place_in_line=taken))
                await self.external_wait(gate.changed(SHARED_SLOT_RECHECK_S), reason=f"a {candidate.name} slot")
        finally:
            gate.left_line(job.id)

    async def _refused(self, job: Job, provider: Provider, exc: AtelierError,
                       following: str | None) -> Job | _TryNext | None:
        """What a submit that raised means for the job: the next provider (`following`), or its end."""
        match exc:
            case SynchronousCallInterrupted():
                # Sent, and no answer: it may be billed, so it goes neither again nor elsewhere.
                return await self._fail(job, str(exc), code="interrupted", charged=None)
            case ModelRetiredError():
                # The model is gone there: nothing was created, so the next provider may serve it for free.
                await self._note_retired(provider, exc)
                return await self._next_or_fail(job, exc, following, code="retired", charged=False)
            case ProviderAuthError() | ProviderUnavailableError():
                # Down or refusing our key: the next provider in the order may serve it — but only if this one
                # surely did not start it.
                if not self._surely_not_started(exc):
                    return await self._fail(job, str(exc), code=type(exc).__name__, charged=None)
                if following is not None:
                    log.warning("job %s: %s; trying %s", job.id, exc, following)
                return await self._next_or_fail(job, exc, following, code=type(exc).__name__, charged=False)
            case ConfigError():
                # e.g. the provider cannot take this input after all: nothing was created there.
                return await self._next_or_fail(job, exc, following, code="config", charged=False)
            case _:
                return await self._fail(job, str(exc), code=type(exc).__name__, charged=False)

    async def _next_or_fail(self, job: Job, exc: AtelierError, following: str | None, *, code: str,
                            charged: bool) -> Job | _TryNext | None:
        if following is None:
            return await self._fail(job, str(exc), code=code, charged=charged)
        # Nothing was started at that provider: the job waits for the next one (None if it was cancelled).
        back = await self.store.transition(job.id, JobState.PENDING, now=self.clock())
        return None if back is None else _TryNext(back)

    @staticmethod
    def _surely_not_started(exc: ProviderError) -> bool:
        """A rejected key, a 429 storm or a connection that never opened: the provider did not start the job.
        A timeout or a dropped connection after sending proves nothing, so those never move a job elsewhere."""
        if isinstance(exc, ProviderAuthError) or exc.status == 429:
            return True
        return isinstance(exc, ProviderUnavailableError) and exc.status is None and not exc.sent

    async def _wait_for_slot(self, job: Job, gate: FairGate) -> None:
        acquire = asyncio.ensure_future(gate.acquire(f"{job.subject.scope}/{job.subject.user_id}", job.id))
        last: int | None = None
        try:
            while True:
                done, _ = await self.external_wait(asyncio.wait({acquire}, timeout=1.0),
                                                   reason=f"a {job.provider} slot")
                if done:
                    acquire.result()
                    return
                place = gate.position(job.id)
                if place != last:
                    last = place
                    await self._emit(JobEvent("waiting", job, place_in_line=place))
        except asyncio.CancelledError:
            if acquire.done() and not acquire.cancelled() and acquire.exception() is None:
                gate.release()  # the slot was won just as we were cancelled: give it back
            else:
                acquire.cancel()
            raise
