"""The one poll loop: from a stored handle to a terminal status, with an adaptive schedule and a deadline."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.errors import MalformedResponseError, ProviderError
from bot.providers.base import Provider
from bot.providers.status import Failed, JobStatus, Queued, RemoteHandle, Running, Terminal, is_terminal
from bot.waits import ExternalWait, passthrough

log = logging.getLogger(__name__)

# Broken JSON is usually a truncated answer: worth a few more looks, not a hang.
MAX_MALFORMED_IN_A_ROW = 3

StatusCallback = Callable[[JobStatus], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class PollSchedule:
    """Start fast, use the provider's hints, back off when a job is far from done.

    Jitter spreads polls so that many jobs submitted together do not poll in lock-step.
    """

    initial_s: float = 1.0
    max_s: float = 10.0
    factor: float = 1.5
    jitter: float = 0.1
    min_s: float = 0.05

    def delay(self, status: JobStatus | None, polls: int, elapsed_s: float, typical_s: float) -> float:
        base = self._base_delay(status, polls, elapsed_s, typical_s)
        base = min(self.max_s, max(self.min_s, base))
        return base * random.uniform(1 - self.jitter, 1 + self.jitter)

    def _base_delay(self, status: JobStatus | None, polls: int, elapsed_s: float, typical_s: float) -> float:
        backoff = self.initial_s * self.factor ** max(0, polls - 1)
        if isinstance(status, Running | Queued) and status.eta_s is not None and status.eta_s > 0:
            # Poll just after the provider's own estimate, never sleeping through more than max_s.
            return status.eta_s * 0.9 if status.eta_s > 1 else status.eta_s
        if isinstance(status, Running) and status.progress and 0 < status.progress < 100 and elapsed_s > 0:
            remaining = elapsed_s * (100 - status.progress) / status.progress
            return max(self.initial_s / 2, remaining * 0.8)
        if isinstance(status, Queued) and status.position:
            # Each job ahead is roughly one typical duration divided among the provider's workers.
            return max(backoff, min(self.max_s, typical_s * 0.5 * status.position))
        if polls == 0:
            # Nothing known yet: a job is rarely done before a quarter of its typical duration (Pixazo
            # advises 2-3 s for its 5-15 s jobs), so the first look waits that long.
            return typical_s * 0.25
        return backoff


async def wait_for_result(
    provider: Provider,
    handle: RemoteHandle,
    *,
    deadline: float,
    schedule: PollSchedule | None = None,
    on_status: StatusCallback | None = None,
    clock: Callable[[], float] | None = None,
    external_wait: ExternalWait = passthrough,
) -> Terminal:
    """Poll until the job ends or the deadline (a `clock()` value) passes; then cancel where the API can.

    Transient provider errors do not end the job: the loop keeps polling until the deadline. Errors that
    cannot get better (a rejected key, an unknown status) end it as failed.
    """
    schedule = schedule or PollSchedule()
    # Looked up now, not at import: the deadline was computed with the same clock by the caller.
    clock = clock or time.monotonic
    started = clock()
    status: JobStatus | None = None
    polls = 0
    malformed = 0
    while True:
        delay = schedule.delay(status, polls, clock() - started, provider.typical_duration_s)
        remaining = deadline - clock()
        if remaining <= 0:
            return await _expire(provider, handle)
        await asyncio.sleep(min(delay, remaining))
        if deadline - clock() <= 0:
            return await _expire(provider, handle)
        polls += 1
        try:
            status = await external_wait(provider.poll(handle), reason=f"{provider.name} status")
        except MalformedResponseError as exc:
            malformed += 1
            if malformed < MAX_MALFORMED_IN_A_ROW:
                log.warning("poll of %s job %s: %s; looking again", provider.name, handle.remote_id, exc)
                continue
            await _cancel_quietly(provider, handle)
            return Failed(reason=str(exc), retryable=False, charged=None, code="malformed_response")
        except ProviderError as exc:
            if exc.retryable:
                log.warning("poll of %s job %s failed, will retry: %s", provider.name, handle.remote_id, exc)
                continue
            # We stop following it, so stop it running (and billing) at the provider too, where we can.
            await _cancel_quietly(provider, handle)
            return Failed(reason=str(exc), retryable=False, charged=None, code=type(exc).__name__)
        malformed = 0
        if on_status is not None:
            await on_status(status)
        if is_terminal(status):
            assert isinstance(status, Terminal)
            return status


async def _cancel_quietly(provider: Provider, handle: RemoteHandle) -> bool:
    try:
        return await provider.cancel(handle)
    except ProviderError as exc:
        log.warning("cancel of %s job %s failed: %s", provider.name, handle.remote_id, exc)
        return False


async def _expire(provider: Provider, handle: RemoteHandle) -> Failed:
    cancelled = await _cancel_quietly(provider, handle)
    reason = "it did not finish before its deadline"
    if cancelled:
        reason += "; it was cancelled at the provider"
    return Failed(reason=reason, retryable=True, charged=None if not cancelled else False, code="deadline")

