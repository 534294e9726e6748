"""An in-process runner on a real SQLite file, with the fal fake (and the local provider) behind it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.app import App, open_app
from bot.jobs import JobEvent, RunnerConfig
from bot.settings import Settings
from bot.store.models import Job, Origin
from tests.fakes.fal import FakeFal


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


@pytest.fixture
async def harness(tmp_path: Path, fal: FakeFal, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    for var in ("GLAM_API_KEY", "PIXAZO_API_KEY", "NOVITA_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    delivery = RecordingDelivery()
    config = RunnerConfig(origins=frozenset({Origin.DISCORD}), adopt=True)
    async with open_app(settings_for(tmp_path, fal), deliverers={"discord": delivery}, config=config) as app:
        events: list[JobEvent] = []

        async def record(event: JobEvent) -> None:
            events.append(event)

        app.runner.add_listener(record)
        yield Harness(app, fal, delivery, events)
