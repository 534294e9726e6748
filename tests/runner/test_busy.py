"""The bot's runner while another real process holds the SQLite file's write lock for longer than the busy
timeout: a running paid job waits it out and is delivered; a new job is refused with a clear "busy" message."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bot.app import open_app
from bot.errors import StoreBusyError
from bot.jobs import RunnerConfig
from bot.operations import ImagineRequest
from bot.store.models import JobState, Origin, Subject
from tests.fakes.base import JobScript
from tests.fakes.fal import FakeFal
from tests.runner.conftest import RecordingDelivery, settings_for
from tests.test_cli_busy import locked

ALICE = Subject.member(1, "alice")


async def test_a_running_job_waits_out_the_lock_and_a_new_one_is_told_the_bot_is_busy(
        tmp_path: Path, fal: FakeFal) -> None:
    fal.script = JobScript(duration_s=1.5)
    delivery = RecordingDelivery()
    settings = settings_for(tmp_path, fal, database_busy_timeout_s=1.0)
    config = RunnerConfig(origins=frozenset({Origin.DISCORD}), adopt=True)
    async with open_app(settings, deliverers={"discord": delivery}, config=config) as app:
        job = await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="x"), provider="fal")
        deadline = time.monotonic() + 10
        while not fal.calls("GET", "/status"):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        async with locked(tmp_path / "atelier.db", 7.0):
            started = time.monotonic()
            with pytest.raises(StoreBusyError, match="database is busy"):
                await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="y"), provider="fal")
            assert time.monotonic() - started < 3.5  # refused after the busy timeout, not after the lock
            await asyncio.sleep(2.0)  # the job has finished at fal while the lock is held
            assert delivery.delivered == []
        await app.runner.wait(job.id)
        deadline = time.monotonic() + 10
        while not delivery.delivered:
            assert time.monotonic() < deadline, "the job was not delivered after the lock"
            await asyncio.sleep(0.05)
        done = await app.store.get_job(job.id)
        assert done is not None and done.state is JobState.SUCCEEDED and len(done.outputs) == 1
        assert [j.id for j in await app.store.list_jobs(ALICE)] == [job.id]  # the refused job left nothing
        assert len(fal.calls("POST")) == 1
