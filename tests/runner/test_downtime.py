"""A job that finished at the provider while Atelier was down for longer than the job's deadline: the result is
paid for, so on restart it is looked up once, downloaded and delivered, never cancelled and failed as late.
Both the runner process (the bot's path) and `atelier job resume` are run for real against the fal fake."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app import open_app
from bot.jobs import RunnerConfig
from bot.operations import ImagineRequest
from bot.store import open_store
from bot.store.models import JobState, Origin, Subject
from tests.fakes.base import JobScript
from tests.fakes.fal import FakeFal
from tests.harness.spawn import start_runner_process
from tests.runner.conftest import RecordingDelivery, settings_for
from tests.runner.test_crash import wait_until
from tests.test_cli import ATELIER, atelier, clean_env

DEADLINE_S = 2.0


@pytest.fixture
async def fal() -> AsyncIterator[FakeFal]:
    server = FakeFal(key="downtime-key")
    await server.start()
    yield server
    await server.stop()


async def start_runner(tmp_path: Path, fal: FakeFal, *extra: str) -> asyncio.subprocess.Process:
    return await start_runner_process(
        tmp_path, {"FAL_KEY": fal.key, "FAL_QUEUE_URL": fal.base_url, "POLL_MIN_S": "0.05", "POLL_MAX_S": "0.2",
                   "JOB_DEADLINE_S": str(DEADLINE_S)}, *extra)


async def test_the_bot_delivers_a_job_that_finished_during_downtime_past_its_deadline(
        tmp_path: Path, fal: FakeFal) -> None:
    fal.script = JobScript(duration_s=1.0)
    proc = await start_runner(tmp_path, fal, "--create", "1")
    await wait_until(lambda: asyncio.sleep(0, bool(fal.calls("GET", "/status"))))
    proc.kill()
    await proc.wait()
    (job,) = fal.jobs.values()
    assert job.phase() in ("queued", "running"), "the job must still be running when the process dies"
    await asyncio.sleep(DEADLINE_S + 0.5)  # down for longer than the deadline; the job finished meanwhile
    assert job.phase() == "done"
    polls_before = len(fal.calls("GET"))

    proc = await start_runner(tmp_path, fal)
    try:
        deliveries = tmp_path / "deliveries.jsonl"
        await wait_until(lambda: asyncio.sleep(0, deliveries.exists()))
    finally:
        proc.kill()
        await proc.wait()
    (delivered,) = [json.loads(line) for line in deliveries.read_text().splitlines()]
    assert delivered["state"] == "succeeded" and len(delivered["images"]) == 1
    assert fal.calls("PUT", "/cancel") == []  # a finished, paid job is not cancelled
    assert len(fal.calls("GET")) > polls_before and fal.file_downloads == 1
    store = await open_store(f"sqlite:///{tmp_path}/atelier.db")
    try:
        stored = await store.get_job(1)
    finally:
        await store.close()
    assert stored is not None and stored.state is JobState.SUCCEEDED and stored.charged


async def test_resume_delivers_a_cli_job_that_finished_during_downtime_past_its_deadline(
        tmp_path: Path, fal: FakeFal) -> None:
    fal.script = JobScript(duration_s=1.0)
    env = clean_env(FAL_KEY=fal.key, FAL_QUEUE_URL=fal.base_url, JOB_DEADLINE_S=str(DEADLINE_S))
    proc = await asyncio.create_subprocess_exec(ATELIER, "job", "imagine", "--prompt", "x", cwd=tmp_path, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    await wait_until(lambda: asyncio.sleep(0, bool(fal.calls("GET", "/status"))))
    proc.kill()
    await proc.wait()
    await asyncio.sleep(DEADLINE_S + 0.5)
    code, result, _ = await atelier("job", "resume", "1", "--out", str(tmp_path / "later"), cwd=tmp_path, env=env)
    assert code == 0, result
    assert result is not None and result["state"] == "succeeded" and len(result["files"]) == 1
    (output,) = next(iter(fal.jobs.values())).outputs
    assert (tmp_path / "later").exists() and Path(result["files"][0]).read_bytes() == fal.files[output]
    assert fal.calls("PUT", "/cancel") == [] and len(fal.calls("POST")) == 1


async def test_a_job_that_finished_after_its_last_poll_is_delivered_not_failed_at_its_deadline(
        tmp_path: Path, fal: FakeFal) -> None:
    # Polled once a second: the last poll before the 1.6 s deadline still says running, the job finishes at 1.2 s,
    # and at the deadline fal refuses the cancel ("already completed"). The result exists and is paid for.
    fal.script = JobScript(duration_s=1.2)
    settings = settings_for(tmp_path, fal, poll_min_s=1.0, poll_max_s=1.0, job_deadline_s=1.6)
    async with open_app(settings, deliverers={"discord": RecordingDelivery()},
                        config=RunnerConfig(origins=frozenset({Origin.DISCORD}))) as app:
        job = await app.runner.create(Subject.member(1, "alice"), Origin.DISCORD, ImagineRequest(prompt="a fox"))
        await app.runner.wait(job.id)
        done = await app.store.get_job(job.id)
    assert fal.calls("GET", "/status"), "the job was polled while it ran"
    assert done is not None
    assert done.state is JobState.SUCCEEDED, done.error_message
    assert len(done.outputs) == 1 and fal.file_downloads == 1
