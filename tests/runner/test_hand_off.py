"""New jobs handed to whichever process claims them first, on a shared PostgreSQL store: two runners, one creating
(as the bot does), both working; every job is run once and delivered once, and both processes take a share."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.app import open_app
from bot.jobs import RunnerConfig
from bot.operations import ImagineRequest
from bot.store.models import JobState, Origin, Subject
from tests.fakes.base import JobScript
from tests.fakes.fal import FakeFal
from tests.pg import fresh_database
from tests.runner.conftest import RecordingDelivery, settings_for


@pytest.fixture
def database() -> Iterator[str]:
    with fresh_database() as url:
        yield url


async def test_new_jobs_are_shared_by_the_processes_on_the_store(tmp_path: Path, fal: FakeFal,
                                                                 database: str) -> None:
    fal.script = JobScript(duration_s=0.3)
    settings = settings_for(tmp_path, fal, database_url=database, fal_max_parallel=20)
    creator_got, worker_got = RecordingDelivery(), RecordingDelivery()
    async with open_app(settings, deliverers={"discord": worker_got},
                        config=RunnerConfig(origins=frozenset({Origin.DISCORD}))), \
            open_app(settings, deliverers={"discord": creator_got},
                     config=RunnerConfig(origins=frozenset({Origin.DISCORD}), hand_off=True)) as creator:
        jobs = [await creator.runner.create(Subject.member(1, f"u{i}"), Origin.DISCORD,
                                            ImagineRequest(prompt=f"job {i}")) for i in range(12)]
        deadline = time.monotonic() + 30
        while len(creator_got.delivered) + len(worker_got.delivered) < len(jobs):
            assert time.monotonic() < deadline, "not every job was delivered"
            await asyncio.sleep(0.05)
        delivered = sorted(j.id for j in creator_got.delivered + worker_got.delivered)
        assert delivered == sorted(j.id for j in jobs)  # each exactly once
        assert creator_got.delivered and worker_got.delivered  # both processes took a share
        assert len(fal.calls("POST")) == len(jobs)  # none submitted twice
        for job in jobs:
            done = await creator.store.get_job(job.id)
            assert done is not None and done.state is JobState.SUCCEEDED
