"""What every part of the runner shares: its configuration, the state of this process's jobs, and the few steps
all of them take (claim a job, start its worker, read it back, tell the listeners)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bot.blobs import Blobs
from bot.fairqueue import FairGate
from bot.jobs.events import JobEvent, Listener
from bot.jobs.slots import SharedGate
from bot.ops import logs
from bot.providers.base import Provider
from bot.providers.durations import DurationBook
from bot.providers.polling import PollSchedule
from bot.providers.registry import Providers
from bot.providers.status import RemoteHandle
from bot.settings import Settings
from bot.store.base import JobStore, SharedJobStore, shared
from bot.store.models import Job, Origin, QuotaLimits
from bot.tasks import TaskSet
from bot.waits import ExternalWait, passthrough
from bot.webhooks.hub import WebhookHub

if TYPE_CHECKING:
    from bot.jobs.outbox import Deliverer

log = logging.getLogger(__name__)

ADOPT_BATCH = 200


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class RunnerConfig:
    origins: frozenset[Origin] = frozenset()  # which unowned jobs this process adopts (bot: DISCORD)
    adopt: bool = True  # scan for orphaned jobs and due deliveries
    # On a shared store, a new job is handed to whichever process claims it first (this one included) instead
    # of being run here: the bot's gateway process then shares the following and delivering with the workers.
    hand_off: bool = False
    deadlines: Mapping[str, float] = field(default_factory=dict)


@dataclass
class LiveJob:
    """A job this process is working: its worker, and once it is at a provider, where (for a cancel)."""

    task: asyncio.Task[None]
    handle: RemoteHandle | None = None
    provider: Provider | None = None
    send: asyncio.Future[Job | None] | None = None  # its submit, while on the wire (see Sending._send_shielded)


class RunnerCore:
    def __init__(self, *, store: JobStore, providers: Providers, blobs: Blobs, settings: Settings,
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
        # Slots per provider: in this process (one machine, SQLite), or shared by every process on the store.
        self.shared = shared(store)
        self.gates: dict[str, FairGate | SharedGate] = {
            p.name: SharedGate(p.limits.max_parallel) if self.shared else FairGate(p.limits.max_parallel)
            for p in providers}
        # How many processes share PROVIDER_REQUESTS_PER_SECOND (the live ones on a shared store).
        self.rate_share = 1
        self._adopting = False
        self._adopt_again = False
        self._stopping = False
        self.tasks = TaskSet("runner")
        self._live: dict[int, LiveJob] = {}
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
        # Set by bot.ops.drain after SIGTERM: no new job is recorded, adopted or sent from then on.
        self.draining = False
        # The last known (state, operation, provider) of each job worked here, for the in-flight metric.
        self._seen: dict[int, tuple[str, str, str]] = {}

    @property
    def defaults(self) -> QuotaLimits:
        return QuotaLimits(daily=self.settings.quota_daily, concurrent=self.settings.quota_concurrent)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def on_the_wire(self) -> int:
        """Submits sent and not yet stored, and deliveries under way: what a drain waits for."""
        return len(self._submits) + len(self._delivering)

    def in_flight(self) -> list[tuple[str, str, str]]:
        """(state, operation, provider) of every job this process works now."""
        return [self._seen.get(job_id, ("pending", "other", "other")) for job_id in list(self._live)]

    def _note(self, job: Job) -> None:
        """What the job is now, for the metrics; and, in the job's own task, for every log line it writes."""
        if job.id in self._live:
            self._seen[job.id] = (job.state.value, job.operation, job.provider)
        current = logs.JOB.get()
        if current is not None and current.job_id == job.id and current.provider != job.provider:
            logs.set_job(job.id, job.provider, job.subject.scope)  # moved to the next provider

    async def _emit(self, event: JobEvent) -> None:
        self._note(event.job)
        for listener in self._listeners:
            try:
                await listener(event)
            except Exception:
                log.exception("job listener failed for job %s", event.job.id)

    async def adopt(self) -> int:
        """Take over every job this process can deliver whose owner is gone; resume each from its state."""
        if self._stopping or self.draining:  # the next process takes them
            return 0
        if self.shared is not None:
            return await self._adopt_shared(self.shared)
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

    async def _adopt_shared(self, store: SharedJobStore) -> int:
        """Adoption on a shared store: leases taken in batches that processes scanning at once split between
        them (SKIP LOCKED), never more than ADOPT_BATCH at a time."""
        taken = 0
        while True:
            ids = await store.claim_batch(sorted(self.config.origins), self.owner, host=self.host, pid=self.pid,
                                          lease_s=self.settings.lease_seconds, limit=ADOPT_BATCH)
            fresh = [job_id for job_id in ids if job_id not in self._live]
            for job_id in fresh:
                self._spawn(job_id)
            taken += len(fresh)
            if len(ids) < ADOPT_BATCH:
                break
        if taken:
            log.info("took over %d job(s) whose process is gone", taken)
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
        self._live[job_id] = LiveJob(task=task)

        def forget(done: asyncio.Task[None]) -> None:
            current = self._live.get(job_id)
            if current is not None and current.task is done:
                del self._live[job_id]
                self._seen.pop(job_id, None)

        task.add_done_callback(forget)
        return task

    async def _work(self, job_id: int) -> None:
        """Walk one job to its end (bot.jobs.walk)."""
        raise NotImplementedError

    def _live_handle(self, job_id: int, handle: RemoteHandle, provider: Provider) -> None:
        live = self._live.get(job_id)
        if live is not None:
            live.handle, live.provider = handle, provider

    async def _reload(self, job: Job) -> Job:
        latest = await self.store.get_job(job.id)
        assert latest is not None
        return latest
