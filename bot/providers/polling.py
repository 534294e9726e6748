"""The one poll loop: from a stored handle to a terminal status, with an adaptive schedule and a deadline.

The schedule spends few requests and notices fast: it uses every hint the provider gives (ETA, progress, queue
position), the durations of recent jobs, and otherwise polls again after a small fraction of the job's age, so
the time a result waits to be noticed stays a small share of the job's own duration. A webhook, when the
provider offers one, wakes the loop at once; polling then is only a slow safety net.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import assert_never

from bot.errors import MalformedResponseError, ProviderError
from bot.providers.base import Provider
from bot.providers.durations import DurationEstimate
from bot.providers.hints import CompletionHint
from bot.providers.status import (
    Cancelled,
    Failed,
    JobStatus,
    Queued,
    RemoteHandle,
    Running,
    Succeeded,
    Terminal,
    is_terminal,
)
from bot.waits import ExternalWait, passthrough

log = logging.getLogger(__name__)

# Broken JSON is usually a truncated answer: worth a few more looks, not a hang.
MAX_MALFORMED_IN_A_ROW = 3
# However many webhook calls arrive for a job, it is not polled more often than this because of them.
HINT_MIN_GAP_S = 1.0

StatusCallback = Callable[[JobStatus], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class PollSchedule:
    """When to look next. Jitter spreads polls so that jobs submitted together do not poll in lock-step."""

    min_s: float = 0.2  # never two polls of one job closer than this
    max_s: float = 10.0  # never longer than this between polls
    age_fraction: float = 0.02  # with no better hint, look again after this share of the job's (expected) age
    jitter: float = 0.1
    safety_s: float = 30.0  # between polls of a job whose completion a webhook will announce

    def delay(self, status: JobStatus | None, polls: int, elapsed_s: float, typical_s: float,
              learned: DurationEstimate | None = None) -> float:
        base = self._base_delay(status, polls, elapsed_s, typical_s, learned)
        # The gap floor is between polls; the first look of a fast provider (local filters) may come sooner.
        base = min(self.max_s, max(self.min_s if polls else 0.0, base))
        return base * random.uniform(1 - self.jitter, 1 + self.jitter)

    def safety_delay(self) -> float:
        return self.safety_s * random.uniform(1 - self.jitter, 1 + self.jitter)

    def _base_delay(self, status: JobStatus | None, polls: int, elapsed_s: float, typical_s: float,
                    learned: DurationEstimate | None) -> float:
        # A share of the job's expected duration, or of its age once it runs longer than expected: a result
        # then waits to be noticed about half that share of the job's own duration on average.
        expected = learned.typical if learned is not None else typical_s
        by_age = self.age_fraction * max(elapsed_s, expected)
        if isinstance(status, Running | Queued) and status.eta_s is not None and status.eta_s > 0:
            return status.eta_s  # the provider's own estimate
        if isinstance(status, Running) and status.progress and 0 < status.progress < 100 and elapsed_s > 0:
            remaining = elapsed_s * (100 - status.progress) / status.progress
            return max(by_age, remaining * 0.8)
        if isinstance(status, Queued):
            # Not even started: it still has its whole run ahead, so noticing the start a little late costs
            # nothing; each job ahead in line makes it further from done. (How many workers serve the line is
            # unknown, so a position is not converted into seconds.)
            return by_age * (2 + (status.position or 0))
        first_likely = learned.low if learned is not None else typical_s * 0.25
        if elapsed_s < first_likely * 0.9:
            # A job is hardly ever done before the fastest recent one (or, knowing nothing, before a quarter
            # of the provider's typical duration: Pixazo advises polls 2-3 s apart for its 5-15 s jobs).
            return first_likely * 0.9 - elapsed_s
        if learned is not None and elapsed_s > 1.5 * learned.high:
            return 3 * by_age  # far beyond what recent jobs took: probably queued or stuck; back off
        return by_age


async def wait_for_result(
    provider: Provider,
    handle: RemoteHandle,
    *,
    deadline: float,
    schedule: PollSchedule | None = None,
    on_status: StatusCallback | None = None,
    clock: Callable[[], float] | None = None,
    external_wait: ExternalWait = passthrough,
    learned: DurationEstimate | None = None,
    min_interval: Callable[[], float] | None = None,
    hint: CompletionHint | None = None,
) -> Terminal:
    """Poll until the job ends or the deadline (a `clock()` value) passes; then cancel where the API can.

    Transient provider errors do not end the job: the loop keeps polling until the deadline. Errors that
    cannot get better (a rejected key, an unknown status) end it as failed. `min_interval` spreads the
    provider's request budget over every job being followed; `hint` is set by a webhook.
    """
    # The clock is looked up now, not at import: the deadline was computed with the same clock by the caller.
    loop = _PollLoop(provider=provider, handle=handle, deadline=deadline, schedule=schedule or PollSchedule(),
                     on_status=on_status, clock=clock or time.monotonic, external_wait=external_wait,
                     learned=learned, min_interval=min_interval, hint=hint)
    return await loop.run()


@dataclass
class _PollLoop:
    provider: Provider
    handle: RemoteHandle
    deadline: float
    schedule: PollSchedule
    on_status: StatusCallback | None
    clock: Callable[[], float]
    external_wait: ExternalWait
    learned: DurationEstimate | None
    min_interval: Callable[[], float] | None
    hint: CompletionHint | None
    status: JobStatus | None = None
    polls: int = 0
    malformed: int = 0
    woken: bool = False
    spacing: float = 0.0
    last_poll: float = float("-inf")  # a webhook that came before the first poll is acted on at once
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    async def run(self) -> Terminal:
        while True:
            if (carried := self._carried()) is not None:
                # A verified webhook carried the outcome itself: nothing left to ask the provider.
                if self.on_status is not None:
                    await self.on_status(carried)
                return carried
            delay = self._delay()
            remaining = self.deadline - self.clock()
            if remaining <= 0:
                return await self._expire()
            await self._pause(min(delay, remaining))
            if self._carried() is not None:
                continue
            if self.deadline - self.clock() <= 0:
                return await self._expire()
            ended = await self._poll()
            if ended is not None:
                return ended

    def _carried(self) -> Terminal | None:
        return self.hint.status if self.hint is not None else None

    def _delay(self) -> float:
        if self.hint is not None and self.hint.expected() and not self.woken:
            delay = self.schedule.safety_delay()
        else:
            # Also right after a call whose job the provider did not yet report ended: its result endpoint may
            # lag the call by a moment, so look again on the normal schedule rather than the safety net's.
            delay = self.schedule.delay(self.status, self.polls, self.clock() - self.started,
                                        self.provider.typical_duration_s, self.learned)
        self.spacing = self.min_interval() if self.min_interval is not None else 0.0
        return max(delay, self.spacing)

    async def _pause(self, seconds: float) -> None:
        self.woken = await _pause(seconds, self.hint)
        if self.woken and self._carried() is None and not (self.hint is not None and self.hint.verified):
            # An unverified call only says "look now"; a flood of them must become neither a flood of polls
            # nor a breach of the provider's request budget.
            gap = max(HINT_MIN_GAP_S, self.spacing) - (self.clock() - self.last_poll)
            if gap > 0:
                await asyncio.sleep(min(gap, max(0.0, self.deadline - self.clock())))

    async def _poll(self) -> Terminal | None:
        """One look at the provider: the outcome when the job ended (or cannot be followed), else None."""
        self.polls += 1
        self.last_poll = self.clock()
        try:
            status = await self.external_wait(self.provider.poll(self.handle), reason=f"{self.provider.name} status")
        except ProviderError as exc:
            self.malformed = self.malformed + 1 if isinstance(exc, MalformedResponseError) else 0
            ending = _ending_after(exc, self.malformed, self.provider, self.handle)
            if ending is None or self._carried() is not None:
                return None  # look again; or the verified outcome came in meanwhile, and it wins
            # We stop following it, so stop it running (and billing) at the provider too, where we can.
            await cancel_quietly(self.provider, self.handle)
            return ending
        self.malformed = 0
        self.status = status
        if self.on_status is not None:
            await self.on_status(status)
        match status:
            case Succeeded() | Failed() | Cancelled():
                return status
            case Queued() | Running():
                return None
            case _:
                assert_never(status)

    async def _expire(self) -> Terminal:
        return await _expire(self.provider, self.handle, look=self.polls == 0, on_status=self.on_status,
                             external_wait=self.external_wait)


def _ending_after(exc: ProviderError, malformed: int, provider: Provider, handle: RemoteHandle) -> Failed | None:
    """What a failed poll means: None to look again, or the failure that ends the job."""
    if isinstance(exc, MalformedResponseError):
        if malformed < MAX_MALFORMED_IN_A_ROW:
            log.warning("poll of %s job %s: %s; looking again", provider.name, handle.remote_id, exc)
            return None
        return Failed(reason=str(exc), retryable=False, charged=None, code="malformed_response")
    if exc.retryable:
        log.warning("poll of %s job %s failed, will retry: %s", provider.name, handle.remote_id, exc)
        return None
    return Failed(reason=str(exc), retryable=False, charged=None, code=type(exc).__name__)


async def _pause(seconds: float, hint: CompletionHint | None) -> bool:
    if hint is None:
        await asyncio.sleep(seconds)
        return False
    return await hint.wait(seconds)


async def cancel_quietly(provider: Provider, handle: RemoteHandle) -> bool:
    """Cancel at the provider where its API allows; a failure is logged, never raised (the job ends anyway).
    True when the provider accepted the cancel."""
    try:
        return await provider.cancel(handle)
    except ProviderError as exc:
        log.warning("cancel of %s job %s failed: %s", provider.name, handle.remote_id, exc)
        return False


async def _expire(provider: Provider, handle: RemoteHandle, *, look: bool = False,
                  on_status: StatusCallback | None = None, external_wait: ExternalWait = passthrough) -> Terminal:
    """The deadline passed: cancel and fail the job. `look`: it was never polled here (resumed after downtime
    longer than its deadline), so ask once first: a job that finished meanwhile is paid for and is delivered.
    A cancel the provider refuses gets that look too: the job may have finished since the last poll."""
    if look and (status := await _last_look(provider, handle, on_status, external_wait)) is not None:
        return status
    cancelled = await cancel_quietly(provider, handle)
    if not cancelled and not look and (status := await _last_look(provider, handle, on_status,
                                                                   external_wait)) is not None:
        return status
    reason = "it did not finish before its deadline"
    if cancelled:
        reason += "; it was cancelled at the provider"
    return Failed(reason=reason, retryable=True, charged=None if not cancelled else False, code="deadline")


async def _last_look(provider: Provider, handle: RemoteHandle, on_status: StatusCallback | None,
                     external_wait: ExternalWait) -> Terminal | None:
    """One poll at the deadline: the job's end if it has ended there, else None."""
    try:
        status = await external_wait(provider.poll(handle), reason=f"{provider.name} status")
    except ProviderError as exc:
        log.warning("last look at %s job %s failed: %s", provider.name, handle.remote_id, exc)
        return None
    if not is_terminal(status):
        return None
    assert isinstance(status, Terminal)
    if on_status is not None:
        await on_status(status)
    return status
