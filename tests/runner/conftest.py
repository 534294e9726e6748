"""An in-process runner on a real store — an SQLite file, and a PostgreSQL database of its own for tests that take
`harness` — with the fal fake (and the local provider) behind it."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from bot.app import App, open_app
from bot.blobs import BlobStore
from bot.fairqueue import FairGate
from bot.jobs import JobEvent, RunnerConfig
from bot.settings import Settings
from bot.store import PostgresJobStore
from bot.store.models import Job, JobState, Origin
from tests.fakes.fal import FakeFal
from tests.pg import fresh_database


async def finished(app: App, job_id: int, timeout: float = 10) -> Job:
    """The job once it has ended and its Discord delivery is recorded."""
    deadline = time.monotonic() + timeout
    while True:
        await app.runner.wait(job_id)
        job = await app.store.get_job(job_id)
        assert job is not None
        if job.state.terminal and await app.store.is_delivered(job_id, "discord"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} stuck in {job.state}"
        await asyncio.sleep(0.02)


@dataclass
class RecordingDelivery:
    delivered: list[Job] = field(default_factory=list)
    fail_times: int = 0

    async def deliver(self, job: Job) -> None:
        if self.fail_times > 0:
            self.fail_times -= 1
            raise RuntimeError("receiver unavailable")
        self.delivered.append(job)


@dataclass
class Harness:
    app: App
    fal: FakeFal
    delivery: RecordingDelivery
    events: list[JobEvent]


def settings_for(tmp_path: Path, fal: FakeFal, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": f"sqlite:///{tmp_path}/atelier.db", "fal_key": fal.key, "fal_queue_url": fal.base_url,
        "poll_min_s": 0.02, "poll_max_s": 0.1, "http_backoff_base_s": 0.01, "quota_daily": 100,
        "quota_concurrent": 50,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


@pytest.fixture
async def fal() -> AsyncIterator[FakeFal]:
    server = FakeFal(key="runner-key")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def runner_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The DATABASE_URL of the harness's store."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/atelier.db"
    else:
        with fresh_database() as url:
            yield url


async def kept(app: App, sha256: str) -> bool:
    """Whether the image is still kept (a file beside SQLite, a row in PostgreSQL)."""
    try:
        await app.blobs.get(sha256)
    except FileNotFoundError:
        return False
    return True


async def age_blob(app: App, sha256: str, when: datetime) -> None:
    """As if the image had last been written at `when`."""
    if isinstance(app.blobs, BlobStore):
        os.utime(app.blobs.path_for(sha256), (when.timestamp(), when.timestamp()))
    else:
        assert isinstance(app.store, PostgresJobStore)
        await app.store._count("UPDATE blobs SET written_at = %s WHERE sha256 = %s", (when, sha256))


async def slots_in_use(app: App, provider: str) -> int:
    """Jobs holding one of the provider's slots: counted by this process's gate, or by the store when the slots
    are shared by every process on it."""
    gate = app.runner.gates[provider]
    if isinstance(gate, FairGate):
        return gate.active
    at_provider = [JobState.SUBMITTING, JobState.QUEUED, JobState.RUNNING, JobState.FETCHING]
    return sum(j.provider == provider for j in await app.store.list_jobs(states=at_provider, limit=10_000))


@pytest.fixture
async def harness(tmp_path: Path, fal: FakeFal, monkeypatch: pytest.MonkeyPatch,
                  runner_db: str) -> AsyncIterator[Harness]:
    for var in ("GLAM_API_KEY", "PIXAZO_API_KEY", "NOVITA_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    delivery = RecordingDelivery()
    config = RunnerConfig(origins=frozenset({Origin.DISCORD}), adopt=True)
    settings = settings_for(tmp_path, fal, database_url=runner_db)
    async with open_app(settings, deliverers={"discord": delivery}, config=config) as app:
        events: list[JobEvent] = []

        async def record(event: JobEvent) -> None:
            events.append(event)

        app.runner.add_listener(record)
        yield Harness(app, fal, delivery, events)
