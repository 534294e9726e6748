"""The job runner: every job is recorded before anything is sent, worked by one process at a time, and
delivered exactly once — through restarts and SIGKILL.

One task per job walks: pending -> (provider slot) -> submitting -> queued/running (poll) -> fetching ->
succeeded | failed | cancelled -> delivery outbox. Each step's result is written before the next starts, so a
restarted process resumes from the stored state:
- pending: submit (it never was);
- submitting: the submit may have reached the provider but its handle was not stored: fail it as
  "interrupted" and refund, rather than risk paying twice (the local provider is free, so it just runs again);
- queued/running/fetching: poll the stored handle;
- finished with a delivery owed: deliver.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, Protocol

from bot import codec
from bot.blobs import BlobStore
from bot.errors import (
    AtelierError,
    ConfigError,
    InputError,
    ModelRetiredError,
    OutputError,
    ProviderAuthError,
    ProviderError,
    ProviderUnavailableError,
    StoreBusyError,
)
from bot.fairqueue import FairGate
from bot.money.caps import CapState
from bot.money.estimate import settle as settle_spend
from bot.money.estimate import worst_case_micro
from bot.money.prices import Price
from bot.operations import EditRequest, FilterRequest, ImagineRequest, Request, image_count
from bot.providers.base import Provider
from bot.providers.durations import DurationBook
from bot.providers.hints import CompletionHint
from bot.providers.polling import PollSchedule, wait_for_result
from bot.providers.registry import Providers
from bot.providers.status import Cancelled, Failed, JobStatus, Queued, RemoteHandle, Running, Succeeded
from bot.providers.synchronous import SynchronousCallInterrupted, is_synchronous, placeholder, settle
from bot.redaction import redact
from bot.settings import Settings
from bot.store import patience
from bot.store.base import JobStore
from bot.store.models import (
    TERMINAL_STATES,
    Job,
    JobState,
    Lease,
    NewJob,
    Origin,
    QuotaLimits,
    QuotaUsage,
    SpendReservation,
    StoredOutput,
    Subject,
)
from bot.store.refunds import images_charged, refund_due
from bot.store.sqlite import pid_alive
from bot.tasks import TaskSet
from bot.waits import ExternalWait, passthrough
from bot.webhooks.hub import WebhookHub

log = logging.getLogger(__name__)

DELIVERY_BACKOFF_S = (2.0, 5.0, 15.0, 60.0, 300.0)
DELIVERY_SCAN_S = 2.0
HOUSEKEEPING_S = 3600.0
# Longer than any job takes from storing an image to recording it (inputs: milliseconds; outputs: the download).
BLOB_WRITE_GRACE = timedelta(days=1)
FETCH_MIN_S = 60.0
RELEASE_WAIT_S = 1.0
ACTIVE_STATES = (JobState.QUEUED, JobState.RUNNING)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class JobEvent:
    kind: Literal["waiting", "progress", "finished"]
    job: Job
    status: JobStatus | None = None
    place_in_line: int | None = None


Listener = Callable[[JobEvent], Awaitable[None]]
Prepare = Callable[[Job], Awaitable[None]]  # see Runner.create


class Deliverer(Protocol):
    """Hands a finished job to its receiver. Must raise on failure, and must not post twice: where the
    receiver has no idempotency key it checks whether the result is already there before posting."""

    async def deliver(self, job: Job) -> None: ...


class JobNotFoundError(AtelierError):
    pass


@dataclass
class _Live:
    task: asyncio.Task[None]
    handle: RemoteHandle | None = None
    provider: Provider | None = None
    send: asyncio.Future[Job | None] | None = None  # its submit, while on the wire (see _send_shielded)


@dataclass
class RunnerConfig:
    origins: frozenset[Origin] = frozenset()  # which unowned jobs this process adopts (bot: DISCORD)
    adopt: bool = True  # scan for orphaned jobs and due deliveries
    deadlines: Mapping[str, float] = field(default_factory=dict)


class Runner:
    def __init__(self, *, store: JobStore, providers: Providers, blobs: BlobStore, settings: Settings,
                 deliverers: Mapping[str, Deliverer], config: RunnerConfig | None = None,
                 schedule: PollSchedule | None = None, clock: Callable[[], datetime] = utcnow,
                 external_wait: ExternalWait = passthrough) -> None:
        self.store = store
        self.providers = providers
        self.blobs = blobs
        self.settings = settings
        self.deliverers = dict(deliverers)
        self.config = config or RunnerConfig()
        self.schedule = schedule or PollSchedule(
            min_s=settings.poll_min_s, max_s=settings.poll_max_s, age_fraction=settings.poll_age_fraction,
            safety_s=settings.webhook_safety_poll_s)
        self.clock = clock
        self.external_wait = external_wait
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.owner = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self.gates = {p.name: FairGate(p.limits.max_parallel) for p in providers}
        self.tasks = TaskSet("runner")
        self._live: dict[int, _Live] = {}
        self._listeners: list[Listener] = []
        self._delivering: set[int] = set()
        self._submits: set[asyncio.Future[Job | None]] = set()
        # Failed delivery attempts per job in this process, for the backoff (a restart starts it over).
        self._delivery_failures: dict[int, int] = {}
        # How long recent jobs took, per provider and operation: when their successors are worth polling.
        self.durations = DurationBook()
        # Set when webhooks are on (bot.app): wakes the poll loop of a job whose provider called back.
        self.webhooks: WebhookHub | None = None
        self._following: dict[str, int] = {}
        # Jobs whose submit this process sent: their durations are honest samples (a resumed job's are not).
        self._submitted_here: set[int] = set()
        self.prices = settings.price_book

    # --- lifecycle -----------------------------------------------------------------------------------------

    @property
    def defaults(self) -> QuotaLimits:
        return QuotaLimits(daily=self.settings.quota_daily, concurrent=self.settings.quota_concurrent)

    async def start(self) -> None:
        self.tasks.spawn(self._heartbeat(), name="lease-heartbeat")
        if self.config.adopt:
            await self.adopt()
            self.tasks.spawn(self._delivery_loop(), name="delivery-loop")
            self.tasks.spawn(self._housekeeping_loop(), name="housekeeping")

    async def stop(self) -> None:
        working = list(self._live)
        if self._submits:
            # Let submits already on the wire store their handles, so the next start polls them.
            await asyncio.wait(set(self._submits), timeout=15)
        await self.tasks.close()
        # Hand the jobs back at once, so a successor need not wait for the leases to lapse. Not worth waiting for
        # a database another program has locked: a successor on this host takes a dead process's jobs anyway.
        with patience.patient_for(RELEASE_WAIT_S):
            for job_id in working:
                try:
                    await self.store.release(job_id, self.owner)
                except StoreBusyError as exc:
                    log.warning("job %s: lease not released: %s", job_id, exc)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    async def _emit(self, event: JobEvent) -> None:
        for listener in self._listeners:
            try:
                await listener(event)
            except Exception:
                log.exception("job listener failed for job %s", event.job.id)

    async def adopt(self) -> int:
        """Take over every job this process can deliver whose owner is gone; resume each from its state."""
        jobs = await self.store.claimable(sorted(self.config.origins), now=self.clock(), host=self.host)
        taken = 0
        for job in jobs:
            if job.id in self._live:
                continue
            if await self._claim(job.id):
                taken += 1
                self._spawn(job.id)
        if taken:
            log.info("resumed %d job(s) left by a previous process", taken)
        return taken

    async def _claim(self, job_id: int) -> bool:
        return await self.store.claim(job_id, self.owner, host=self.host, pid=self.pid, now=self.clock(),
                                      lease_s=self.settings.lease_seconds)

    def _spawn(self, job_id: int) -> asyncio.Task[None]:
        """One worker per job in this process, whoever asks."""
        live = self._live.get(job_id)
        if live is not None:
            return live.task
        task = self.tasks.spawn(self._work(job_id), name=f"job-{job_id}")
        self._live[job_id] = _Live(task=task)

        def forget(done: asyncio.Task[None]) -> None:
            current = self._live.get(job_id)
            if current is not None and current.task is done:
                del self._live[job_id]

        task.add_done_callback(forget)
        return task

    # --- the API the Discord layer and the CLI use -----------------------------------------------------------

    async def create(self, subject: Subject, origin: Origin, request: Request, *, provider: str | None = None,
                     preferred: Sequence[str] | None = None, channel_id: str | None = None,
                     parent_job_id: int | None = None, extra: Mapping[str, Any] | None = None,
                     start: bool = True, prepare: Prepare | None = None, withhold_nsfw: bool = False) -> Job:
        """Validate, store the inputs, charge the quota and record the job (one transaction), then start it.

        `prepare(job)` runs between recording and starting: where the job's receiver first shows it (the Discord
        layer posts its status message there, so progress has somewhere to go). Until it returns the job is leased
        to this process, so nobody else starts it; whatever it raises is logged and the job runs anyway (it is
        charged, and its result is owed).

        `withhold_nsfw`: the result will not be shown if an image is flagged NSFW (a channel that is not
        age-restricted), so such a result is not charged (bot.store.refunds).

        Raises InputError/ConfigError (nothing recorded) or QuotaError (nothing recorded or charged).
        """
        chosen, fallbacks = await self._choose(request, provider, preferred)
        for image in codec.images_of(request):
            await self.blobs.put(image.data)
        op = request.operation.value
        deadline = self.config.deadlines.get(op, self.settings.job_deadlines.get(op, self.settings.job_deadline_s))
        new = NewJob(subject=subject, origin=origin, operation=request.operation.value,
                     request=codec.encode(request), provider=chosen.name, cost=image_count(request),
                     channel_id=channel_id, parent_job_id=parent_job_id, deadline_s=deadline,
                     seed=getattr(request, "seed", None), extra={**(extra or {}), "fallbacks": fallbacks},
                     lease=Lease(self.owner, self.host, self.pid, self.settings.lease_seconds),
                     delivery_target=origin.value, withhold_nsfw=withhold_nsfw,
                     spend=await self.spend_reservation(request, [chosen.name, *fallbacks]))  # the spend caps
        job = await self.store.create_job(new, defaults=self.defaults, now=self.clock())
        try:
            if prepare is not None:
                await prepare(job)
        except Exception:
            log.exception("job %s: preparing where it is shown failed; it runs anyway", job.id)
        finally:
            # Also when cancelled part way: a job leased to this live process would otherwise never start.
            if start:
                self._spawn(job.id)
        return job

    async def _choose(self, request: Request, provider: str | None,
                      preferred: Sequence[str] | None) -> tuple[Provider, list[str]]:
        """The named provider, or the first in the operation's order that can take this request (e.g. Novita
        makes one image per job, so a request for four goes to the next); the others able to take it are kept as
        fallbacks for when the chosen one is down or rejects the key."""
        first = self.providers.choose(request.operation, provider, preferred)
        if provider is not None:
            if (until := await self._retired_until(first)) is not None:
                raise ConfigError(f"The provider {first.name} is skipped until {until:%H:%M} UTC: its model "
                                  f"{first.model} was found retired there (see the log or `atelier doctor`).")
            await first.validate(request)
            return first, []
        able: list[Provider] = []
        first_error: AtelierError | None = None
        for candidate in self.providers.order(request.operation, preferred):
            if (until := await self._retired_until(candidate)) is not None:
                first_error = first_error or ConfigError(
                    f"No provider can take this {request.operation.value}: {candidate.name}'s model "
                    f"{candidate.model} was found retired (skipped until {until:%H:%M} UTC).")
                continue
            try:
                await candidate.validate(request)
            except (InputError, ConfigError, ProviderError) as exc:
                first_error = first_error or exc
                continue
            able.append(candidate)
        if not able:
            assert first_error is not None
            raise first_error
        return able[0], [p.name for p in able[1:]]

    async def _retired_until(self, provider: Provider) -> datetime | None:
        """Until when the provider's model is marked retired in the store (by any process); None if it is not."""
        if provider.model is None:
            return None
        return await self.store.retired_until(provider.name, provider.model, now=self.clock())

    async def _note_retired(self, provider: Provider, exc: ModelRetiredError) -> None:
        """Mark the model gone for every process on this store, and tell the operator once."""
        until = self.clock() + timedelta(seconds=self.settings.retired_model_mark_s)
        if await self.store.mark_retired(provider.name, exc.model, reason=str(exc), now=self.clock(), until=until):
            log.warning("%s: the model %s is gone there (retired or removed: its endpoint answered HTTP %s). Jobs "
                        "go to the next provider in the order, and every process on this database skips %s until "
                        "%s UTC. To use %s again, set %s.", provider.name, exc.model, exc.status, provider.name,
                        f"{until:%Y-%m-%d %H:%M}", provider.name, exc.instead)

    async def rerun(self, job_id: int, subject: Subject, *, vary: bool, origin: Origin = Origin.DISCORD,
                    channel_id: str | None = None, extra: Mapping[str, Any] | None = None,
                    preferred: Sequence[str] | None = None, start: bool = True,
                    prepare: Prepare | None = None, withhold_nsfw: bool = False) -> Job:
        """Retry (the same request) or vary (a new random seed) any job, as `subject`'s new job."""
        original = await self.store.get_job(job_id)
        if original is None:
            raise JobNotFoundError(f"There is no job {job_id}.")
        try:
            request = await codec.decode(original.request, self.blobs)
        except (FileNotFoundError, ValueError) as exc:
            raise InputError(f"Job {job_id}'s input images are no longer kept, so it cannot be run again.") from exc
        if vary and isinstance(request, EditRequest | ImagineRequest):
            request = replace(request, seed=random.randint(0, 2**31 - 1))
        # The original provider if it is still configured (and can take the request), else the order.
        provider = original.provider if original.provider in self.providers else None
        if provider is not None:
            try:
                await self.providers.get(provider).validate(request)
            except (InputError, ConfigError, ProviderError):
                provider = None
        if provider is not None and await self._retired_until(self.providers.get(provider)) is not None:
            provider = None  # its model was found retired since: the order decides, as for a new job
        return await self.create(subject, origin, request, provider=provider, preferred=preferred,
                                 channel_id=channel_id or original.channel_id, parent_job_id=original.id,
                                 extra=extra, start=start, prepare=prepare, withhold_nsfw=withhold_nsfw)

    async def cancel(self, job_id: int, subject: Subject | None, *, reason: str = "cancelled") -> Job:
        """Cancel a job (subject None = an operator). Queued locally: dropped; at the provider: cancelled
        there where the API allows. Refunded by the one refund rule."""
        job = await self.store.get_job(job_id)
        if job is None or (subject is not None and (job.subject.scope, job.subject.user_id)
                           != (subject.scope, subject.user_id)):
            raise JobNotFoundError(f"You have no job {job_id}.")
        if job.state.terminal:
            raise InputError(f"Job {job_id} has already {job.state.value}.")
        nonterminal = [s for s in JobState if s not in TERMINAL_STATES]
        done = await self.store.transition(job_id, nonterminal, now=self.clock(), state=JobState.CANCELLED,
                                           error_code="cancelled", error_message=reason,
                                           finished_at=self.clock())
        if done is None:
            latest = await self.store.get_job(job_id)
            assert latest is not None
            return latest
        live = self._live.get(job_id)
        if live is not None:
            # A submit already on the wire is shielded: it finishes, finds the job cancelled, and cancels it
            # at the provider.
            live.task.cancel()
            if live.send is not None and is_synchronous(done.handle):
                # A synchronous call cannot be cancelled there and its answer is not wanted: stop waiting for it.
                live.send.cancel()
        if done.handle:
            handle = RemoteHandle.model_validate(done.handle)
            if handle.provider in self.providers:
                try:
                    await self.providers.get(handle.provider).cancel(handle)
                except ProviderError as exc:
                    log.warning("cancel of job %s at %s failed: %s", job_id, handle.provider, exc)
        done = await self._finish(done)
        if done.origin.value in self.deliverers and await self._claim(job_id):
            await self._deliver_now(done)
        return done

    async def cancel_at_provider(self, job_id: int) -> bool:
        """Stop a job of this process at once without recording it (the store is locked by another program and
        the user asked to stop): its worker is cancelled and the job cancelled at the provider where the API
        allows. The row stays unfinished, leased to this process; once this process is gone, `recover_abandoned`
        settles it. True when the provider accepted the cancel."""
        live = self._live.get(job_id)
        if live is None:
            return False
        live.task.cancel()
        if live.handle is None or live.provider is None:
            return False
        try:
            return await live.provider.cancel(live.handle)
        except ProviderError as exc:
            log.warning("cancel of job %s at %s failed: %s", job_id, live.provider.name, exc)
            return False

    async def resume(self, job_id: int) -> bool:
        """Take over one job explicitly (`atelier job resume`): False if a live process holds it."""
        if not await self._claim(job_id):
            return False
        job = await self.store.get_job(job_id)
        if job is None:
            return False
        deliverer = self.deliverers.get(job.origin.value)
        if job.state.terminal and deliverer is not None and await self.store.is_delivered(job.id, job.origin.value):
            await deliverer.deliver(job)  # asked for again: the receiver gets it again
            await self.store.release(job.id, self.owner)
            return True
        if job.id not in self._live:
            self._spawn(job.id)
        return True

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
                settled.append(await self._settle_abandoned(job))
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
                status = await self.external_wait(provider.poll(RemoteHandle.model_validate(job.handle)),
                                                  reason=f"{provider.name} status")
            except ProviderError as exc:
                log.warning("job %s: one look at %s failed (%s); cancelling it", job.id, provider.name, exc)
            else:
                if isinstance(status, Succeeded | Failed | Cancelled):
                    return await self._conclude(job, provider, status)
        return await self.cancel(job.id, None, reason=f"cancelled: {gone}")

    async def usage(self, subject: Subject) -> QuotaUsage:
        return await self.store.usage(subject, defaults=self.defaults, now=self.clock())

    async def wait(self, job_id: int) -> None:
        live = self._live.get(job_id)
        if live is not None:
            await asyncio.shield(live.task)

    def place_in_line(self, job: Job) -> int | None:
        gate = self.gates.get(job.provider)
        return gate.position(job.id) if gate else None

    # --- working one job -------------------------------------------------------------------------------------

    async def _work(self, job_id: int) -> None:
        job = await self.store.get_job(job_id)
        if job is None:
            return
        # A database locked by another program (a backup, a VACUUM) must not kill a paid job: its store calls
        # wait until its own deadline (and at least the store's usual patience, for the last writes).
        patience.be_patient_for(max((job.deadline_at - self.clock()).total_seconds(),
                                    self.settings.database_busy_timeout_s))
        try:
            if not job.state.terminal:
                job = await self._advance(job)
            elif not await self.store.is_delivered(job.id, job.origin.value):
                # Finished before a crash: the refund and the delivery may not have been written yet.
                job = await self._finish(job, announce=False)
            if job.state.terminal:
                await self._deliver_now(job)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job %s crashed in state %s", job_id, job.state)
            latest = await self.store.get_job(job_id)
            if latest is not None and not latest.state.terminal:
                failed = await self._fail(latest, "an internal error stopped this job", code="internal",
                                          charged=None)
                await self._deliver_now(failed)

    async def _advance(self, job: Job) -> Job:
        provider = self.providers.get(job.provider) if job.provider in self.providers else None
        if provider is None:
            return await self._fail(job, f"the provider {job.provider} is no longer configured", code="config",
                                    charged=False)
        if job.state in (JobState.SUBMITTING, JobState.QUEUED, JobState.RUNNING, JobState.FETCHING) \
                and provider.free_to_resubmit:
            job = await self._reset_free_job(job)
        if job.state is JobState.SUBMITTING:
            # We died between sending the submit and storing its handle: it may be running (and billed) at
            # the provider. Sending it again could charge twice, so it ends here, refunded.
            return await self._fail(job, "interrupted: Atelier restarted while sending this job; it was not "
                                    "sent again so that it cannot be charged twice", code="interrupted",
                                    charged=None)
        if job.state is JobState.PENDING:
            submitted = await self._submit(job, provider)
            if submitted is None:
                return await self._reload(job)
            job, provider = submitted
            if job.state.terminal:
                return job
        else:
            # Resumed after a restart: the job is already at the provider, so it takes a slot without waiting.
            self.gates[provider.name].occupy()
        if is_synchronous(job.handle):
            return await self._settle_synchronous(job, provider)  # gives the slot back too
        return await self._follow(job, provider)  # gives the slot back, whatever happens

    async def _settle_synchronous(self, job: Job, provider: Provider) -> Job:
        """A synchronous call's outcome is in its stored handle (nothing to poll): the images that came back, or,
        for a placeholder a restart found, an interruption that is refunded and never sent again."""
        self.gates[provider.name].release()
        self._submitted_here.discard(job.id)
        assert job.handle is not None
        handle = RemoteHandle.model_validate(job.handle)
        result = settle(handle, interrupted_because=f"Atelier stopped during the call to {handle.provider}")
        return await self._conclude(job, provider, result)

    async def _reset_free_job(self, job: Job) -> Job:
        reset = await self.store.transition(job.id, [job.state], now=self.clock(), state=JobState.PENDING,
                                            handle=None)
        return reset or await self._reload(job)

    async def _reload(self, job: Job) -> Job:
        latest = await self.store.get_job(job.id)
        assert latest is not None
        return latest

    async def _submit(self, job: Job, provider: Provider) -> tuple[Job, Provider] | None:
        request = await codec.decode(job.request, self.blobs)
        candidates = [provider] + [self.providers.get(n) for n in job.extra.get("fallbacks", [])
                                   if n in self.providers]
        for index, candidate in enumerate(candidates):
            gate = self.gates[candidate.name]
            await self._wait_for_slot(job, gate)
            keep_slot = False  # kept only when the job is at the provider; _follow gives it back
            try:
                if self.clock() >= job.deadline_at:
                    # It waited in line past its deadline: fail it before paying for it.
                    return await self._fail(job, "it waited in line past its deadline and was not sent",
                                            code="deadline", charged=False), candidate
                # Compare-and-set: if the job was cancelled while it waited, nothing is sent.
                sending = await self.store.transition(job.id, [JobState.PENDING], now=self.clock(),
                                                      state=JobState.SUBMITTING, provider=candidate.name,
                                                      attempts=job.attempts + 1)
                if sending is None:
                    return None
                job = sending
                try:
                    stored = await self._send_shielded(job.id, candidate, request)
                except SynchronousCallInterrupted as exc:
                    # Sent, and no answer: it may be billed, so it goes neither again nor elsewhere.
                    return await self._fail(job, str(exc), code="interrupted", charged=None), candidate
                except ModelRetiredError as exc:
                    # The model is gone there: nothing was created, so the next provider may serve it for free.
                    await self._note_retired(candidate, exc)
                    if index + 1 < len(candidates):
                        back = await self._back_to_pending(job)
                        if back is None:
                            return None
                        job = back
                        continue
                    return await self._fail(job, str(exc), code="retired", charged=False), candidate
                except (ProviderAuthError, ProviderUnavailableError) as exc:
                    # Down or refusing our key: the next provider in the order may serve it.
                    if index + 1 < len(candidates) and self._surely_not_started(exc):
                        log.warning("job %s: %s; trying %s", job.id, exc, candidates[index + 1].name)
                        back = await self._back_to_pending(job)
                        if back is None:
                            return None
                        job = back
                        continue
                    charged = False if self._surely_not_started(exc) else None
                    return await self._fail(job, str(exc), code=type(exc).__name__, charged=charged), candidate
                except ConfigError as exc:
                    # e.g. the provider cannot take this input after all: nothing was created there.
                    if index + 1 < len(candidates):
                        back = await self._back_to_pending(job)
                        if back is None:
                            return None
                        job = back
                        continue
                    return await self._fail(job, str(exc), code="config", charged=False), candidate
                except AtelierError as exc:
                    return await self._fail(job, str(exc), code=type(exc).__name__, charged=False), candidate
                if stored is None:  # cancelled while the submit was on the wire (and cancelled there)
                    return None
                keep_slot = True
                return stored, candidate
            finally:
                if not keep_slot:
                    gate.release()
        return None

    async def _back_to_pending(self, job: Job) -> Job | None:
        """Nothing was started at that provider: the job waits for the next one (None if it was cancelled)."""
        return await self.store.transition(job.id, [JobState.SUBMITTING], now=self.clock(), state=JobState.PENDING)

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
        stored = await self.store.transition(job_id, [JobState.SUBMITTING], now=self.clock(),
                                             state=JobState.QUEUED, handle=handle.model_dump(mode="json"),
                                             submitted_at=self.clock())
        if stored is None:  # cancelled while the submit was on the wire: cancel it there too
            await self._cancel_quietly(provider, handle)
            return None
        self._live_handle(job_id, handle, provider)
        self._submitted_here.add(job_id)
        return stored

    async def _send_synchronous(self, job_id: int, provider: Provider, request: Request) -> Job | None:
        """A call whose own answer carries the images. Before it is sent the job is shown as running, with a
        placeholder handle: a restart that finds the placeholder ends the job as interrupted (bot.providers.
        synchronous). The answer then replaces the placeholder, so a restart after it still delivers."""
        sending = placeholder(provider.name, job_id, request.operation.value)
        running = await self.store.transition(job_id, [JobState.SUBMITTING], now=self.clock(), state=JobState.RUNNING,
                                              handle=sending.model_dump(mode="json"), submitted_at=self.clock())
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
            await self.store.transition(job_id, [JobState.RUNNING], now=self.clock(), state=JobState.SUBMITTING,
                                        handle=None, submitted_at=None)
            raise
        stored = await self.store.transition(job_id, [JobState.RUNNING], now=self.clock(),
                                             handle=handle.model_dump(mode="json"))
        if stored is None:  # cancelled during the call: nothing to cancel there, the images are not wanted
            return None
        self._live_handle(job_id, handle, provider)
        self._submitted_here.add(job_id)
        return stored

    @staticmethod
    def _ended_by_webhook(hint: CompletionHint, reported_end: bool, fresh: bool) -> bool | None:
        """Did the provider's call announce this job's end? None where the answer says nothing about whether
        calls arrive: the job was cancelled or expired here, or it ended while this process was not running."""
        if hint.fired:
            return True
        return False if fresh and reported_end else None

    def _poll_spacing(self, provider: str) -> float:
        """The shortest gap between two polls of one job that keeps all followed jobs of this provider within
        80% of its request budget (the rest is for submits and downloads); 0 when there is no budget."""
        rate = self.settings.provider_requests_per_second
        if not rate:
            return 0.0
        return self._following.get(provider, 0) / (rate * 0.8)

    @staticmethod
    def _surely_not_started(exc: ProviderError) -> bool:
        """A rejected key, a 429 storm or a connection that never opened: the provider did not start the job.
        A timeout or a dropped connection after sending proves nothing, so those never move a job elsewhere."""
        if isinstance(exc, ProviderAuthError) or exc.status == 429:
            return True
        return isinstance(exc, ProviderUnavailableError) and exc.status is None and not exc.sent

    def _live_handle(self, job_id: int, handle: RemoteHandle, provider: Provider) -> None:
        live = self._live.get(job_id)
        if live is not None:
            live.handle, live.provider = handle, provider

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

    async def _follow(self, job: Job, provider: Provider) -> Job:
        gate = self.gates[provider.name]
        try:
            assert job.handle is not None
            handle = RemoteHandle.model_validate(job.handle)
        except Exception:
            gate.release()
            raise
        self._live_handle(job.id, handle, provider)
        remaining = (job.deadline_at - self.clock()).total_seconds()
        current = job
        reported_end = False  # the provider itself said the job ended (not our deadline or a broken answer)

        async def on_status(status: JobStatus) -> None:
            nonlocal current, reported_end
            reported_end = isinstance(status, Succeeded | Failed)
            if isinstance(status, Queued | Running):
                fields: dict[str, Any] = {"state": JobState.QUEUED if isinstance(status, Queued) else
                                          JobState.RUNNING}
                if isinstance(status, Queued):
                    fields["queue_position"] = status.position
                else:
                    fields["progress"] = status.progress
                changed = any(getattr(current, k) != v for k, v in fields.items())
                if changed:
                    updated = await self.store.transition(job.id, ACTIVE_STATES, now=self.clock(), **fields)
                    if updated is None:
                        raise asyncio.CancelledError  # cancelled elsewhere: stop following
                    current = updated
                await self._emit(JobEvent("progress", current, status=status))

        fresh = job.id in self._submitted_here
        hint = None
        # A call is due only if this job was submitted asking for one, at the URL we listen on now.
        if self.webhooks is not None and provider.webhook_url and handle.extra.get("webhook") == provider.webhook_url:
            hint = self.webhooks.expect(provider.name, handle.remote_id)
            if not fresh:
                # Resumed after a restart: its call may have come while nobody listened, so look once now
                # rather than waiting for the first safety-net poll.
                hint.look_now()
        self._following[provider.name] = self._following.get(provider.name, 0) + 1
        try:
            result = await wait_for_result(provider, handle, deadline=time.monotonic() + remaining,
                                           external_wait=self.external_wait,
                                           schedule=self.schedule, on_status=on_status,
                                           learned=self.durations.estimate(provider.name, handle.operation),
                                           min_interval=lambda: self._poll_spacing(provider.name), hint=hint)
        except asyncio.CancelledError:
            latest = await self._reload(job)
            if latest.state is JobState.CANCELLED:
                return latest
            raise
        finally:
            gate.release()
            self._submitted_here.discard(job.id)
            self._following[provider.name] -= 1
            if hint is not None and self.webhooks is not None:
                self.webhooks.forget(provider.name, handle.remote_id,
                                     ended_by_webhook=self._ended_by_webhook(hint, reported_end, fresh))
        if isinstance(result, Succeeded) and job.submitted_at is not None and fresh:
            self.durations.record(provider.name, handle.operation,
                                  (self.clock() - job.submitted_at).total_seconds())
        return await self._conclude(current, provider, result)

    async def _conclude(self, job: Job, provider: Provider, result: Succeeded | Failed | Cancelled) -> Job:
        if isinstance(result, Failed):
            return await self._fail(job, result.reason, code=result.code or "failed", charged=result.charged)
        if isinstance(result, Cancelled):
            cancelled = await self.store.transition(job.id, [*ACTIVE_STATES, JobState.FETCHING], now=self.clock(),
                                                    state=JobState.CANCELLED, error_code="cancelled",
                                                    error_message=result.reason, finished_at=self.clock())
            return await self._finish(cancelled) if cancelled else await self._reload(job)
        fetching = await self.store.transition(job.id, [*ACTIVE_STATES, JobState.FETCHING], now=self.clock(),
                                               state=JobState.FETCHING)
        if fetching is None:
            return await self._reload(job)
        outputs: list[StoredOutput] = []
        # Downloads get what is left of the job's deadline, but at least a minute: the images exist and are paid.
        budget = max(FETCH_MIN_S, (job.deadline_at - self.clock()).total_seconds())
        try:
            async with asyncio.timeout(budget):
                for output in result.outputs:
                    image = await self.external_wait(provider.fetch(output), reason=f"{provider.name} download")
                    digest, path = await self.blobs.put(image.data)
                    outputs.append(StoredOutput(sha256=digest, mime=image.mime, width=image.width,
                                                height=image.height, provider_url=output.url, nsfw=image.nsfw,
                                                path=str(path)))
        except OutputError as exc:
            return await self._fail(fetching, str(exc), code="output", charged=True)
        except TimeoutError:
            return await self._fail(fetching, "the images could not be downloaded in time", code="output",
                                    charged=True)
        done = await self.store.transition(job.id, [JobState.FETCHING], now=self.clock(), state=JobState.SUCCEEDED,
                                           outputs=tuple(outputs), finished_at=self.clock(), charged=True,
                                           seed=result.seed if result.seed is not None else fetching.seed)
        return await self._finish(done) if done else await self._reload(job)

    async def _fail(self, job: Job, reason: str, *, code: str, charged: bool | None) -> Job:
        nonterminal = [s for s in JobState if s not in TERMINAL_STATES]
        failed = await self.store.transition(job.id, nonterminal, now=self.clock(), state=JobState.FAILED,
                                             error_code=code, error_message=redact(reason)[:1000], charged=charged,
                                             finished_at=self.clock())
        if failed is None:
            return await self._reload(job)
        return await self._finish(failed)

    async def _finish(self, job: Job, *, announce: bool = True) -> Job:
        """A job just became terminal: apply the refund rule and owe a delivery (both idempotent, so a job
        recovered after a crash at any point in here is finished the same way)."""
        job = await self._settle(job)
        await self.store.enqueue_delivery(job.id, job.origin.value, now=self.clock())
        if announce:
            await self._emit(JobEvent("finished", job))
        return job

    async def _settle(self, job: Job) -> Job:
        """Charge the finished job what its member got (bot.store.refunds); idempotent."""
        if refund_due(job) and await self.store.settle_cost(job.id, images=images_charged(job), now=self.clock()):
            job = await self._reload(job)
        await self._settle_spend(job)  # its money reservation, by the same rule
        return job

    # --- money: prices, the reservation against the spend caps, and its settlement ----------------

    def price(self, provider: str, operation: str, *, credits: Decimal | None = None) -> Price:
        model = self.providers.get(provider).model if provider in self.providers else None
        return self.prices.price(provider, model, operation, credits=credits)

    async def _price_of(self, provider: str, operation: str, filter_name: str | None) -> Price:
        """The price of one job's images: a filter's own catalogue credits where the provider lists them."""
        credits = None
        if filter_name is not None and provider in self.providers and self.prices.glam_usd_per_credit is not None:
            listed = await self.providers.get(provider).list_filters()
            credits = next((f.credits for f in listed if f.name == filter_name), None)
        return self.price(provider, operation, credits=credits)

    async def spend_reservation(self, request: Request, providers: Sequence[str]) -> SpendReservation:
        """The job's worst case: at the dearest of the providers it may run on (the chosen one and fallbacks)."""
        name = request.name if isinstance(request, FilterRequest) else None
        prices = [await self._price_of(p, request.operation.value, name) for p in providers]
        return SpendReservation(worst_micro=worst_case_micro(prices, request),
                                install_daily_micro=self.settings.spend_daily_micro)

    async def _settle_spend(self, job: Job) -> None:
        spend = await self.store.job_spend(job.id)
        # Settled again when a delivery is given up later (the member then got nothing): only ever lowers it.
        if spend is None or not job.state.terminal:
            return
        name = job.request.get("name") if job.operation == "filter" else None
        price = await self._price_of(job.provider, job.operation, name if isinstance(name, str) else None)
        settled = settle_spend(job, price, asked_images=spend.images,
                               reserved_micro=spend.reserved_micro)
        await self.store.settle_spend(job.id, images=settled.images, reserved_micro=settled.reserved_micro,
                                      member_micro=settled.member_micro, provider=job.provider, now=self.clock())

    async def spend_caps(self, subject: Subject) -> list[CapState]:
        """Every spend cap on `subject`'s jobs as it stands now (what is spent, what is left, when it resets)."""
        return await self.store.spend_caps(subject.scope, subject.user_id,
                                           install_daily_micro=self.settings.spend_daily_micro, now=self.clock())

    async def _cancel_quietly(self, provider: Provider, handle: RemoteHandle) -> None:
        try:
            await provider.cancel(handle)
        except ProviderError as exc:
            log.warning("cancel at %s failed: %s", provider.name, exc)

    # --- delivery ----------------------------------------------------------------------------------------------

    async def _deliver_now(self, job: Job) -> None:
        target = job.origin.value
        deliverer = self.deliverers.get(target)
        if deliverer is None or job.id in self._delivering:
            return
        self._delivering.add(job.id)  # before any await: two callers in this process never both deliver
        try:
            if await self.store.is_delivered(job.id, target):
                await self.store.release(job.id, self.owner)
                return
            await deliverer.deliver(job)
        except Exception as exc:
            attempt = self._delivery_failures.get(job.id, 0)
            self._delivery_failures[job.id] = attempt + 1
            wait = DELIVERY_BACKOFF_S[min(attempt, len(DELIVERY_BACKOFF_S) - 1)]
            failed = await self.store.delivery_failed(job.id, target, error=str(exc)[:500],
                                                      next_attempt_at=self.clock() + timedelta(seconds=wait))
            if failed >= self.settings.delivery_max_attempts:
                await self._give_up_delivery(job, target, failed, exc)
                return
            log.warning("delivery of job %s failed (attempt %d), retrying in %.0f s: %s", job.id, failed, wait, exc)
            return
        finally:
            self._delivering.discard(job.id)
        self._delivery_failures.pop(job.id, None)
        await self.store.delivery_done(job.id, target, now=self.clock())
        await self.store.release(job.id, self.owner)

    async def _give_up_delivery(self, job: Job, target: str, attempts: int, exc: Exception) -> None:
        """No delivery is retried forever: the job is marked undeliverable (shown in /jobs and `atelier jobs`)
        and, its member never having got it, charged nothing."""
        log.error("delivery of job %s failed %d times; giving up, the job is marked undeliverable: %s", job.id,
                  attempts, exc)
        if await self.store.give_up_delivery(job.id, target, error=str(exc)[:500], now=self.clock()):
            await self._settle(await self._reload(job))
        self._delivery_failures.pop(job.id, None)
        await self.store.release(job.id, self.owner)

    async def _delivery_loop(self) -> None:
        while True:
            # A plain sleep: failed deliveries are retried on their own schedule (next_attempt_at), so nothing
            # needs to wake this loop early.
            await asyncio.sleep(DELIVERY_SCAN_S)
            try:
                await self._deliver_due()
            except StoreBusyError as exc:
                log.warning("delivery scan: %s", exc)
            except Exception:
                log.exception("delivery scan failed; trying again in %.0f s", DELIVERY_SCAN_S)

    async def _deliver_due(self) -> None:
        due = await self.store.due_deliveries(now=self.clock(), targets=sorted(self.deliverers))
        for delivery in due:
            if delivery.job_id in self._live or delivery.job_id in self._delivering:
                continue
            job = await self.store.get_job(delivery.job_id)
            if job is None or job.origin not in self.config.origins:
                continue
            if await self._claim(delivery.job_id):
                self._spawn(job.id)
        await self.adopt()

    # --- background upkeep -------------------------------------------------------------------------------------

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

