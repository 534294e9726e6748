"""No delivery is retried forever: after DELIVERY_MAX_ATTEMPTS failures the job is marked undeliverable, shown as
such by `atelier jobs`, and not charged. The runner and the fal fake on a real SQLite file; the CLI as a process."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

import bot.jobs.outbox
from bot.app import open_app
from bot.jobs import RunnerConfig
from bot.operations import ImagineRequest
from bot.store.models import Origin, Subject
from tests.fakes.fal import FakeFal
from tests.runner.conftest import RecordingDelivery, settings_for
from tests.test_cli import ATELIER, clean_env

ALICE = Subject.member(1, "alice")


async def test_a_delivery_that_keeps_failing_is_given_up_marked_and_refunded(
        tmp_path: Path, fal: FakeFal, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bot.jobs.outbox, "DELIVERY_SCAN_S", 0.05)
    monkeypatch.setattr(bot.jobs.outbox, "DELIVERY_BACKOFF_S", (0.05,))
    delivery = RecordingDelivery(fail_times=1_000)
    attempts = 0
    real = delivery.deliver

    async def counting(job):  # type: ignore[no-untyped-def]
        nonlocal attempts
        attempts += 1
        await real(job)

    delivery.deliver = counting  # type: ignore[method-assign]
    settings = settings_for(tmp_path, fal, delivery_max_attempts=3)
    config = RunnerConfig(origins=frozenset({Origin.DISCORD}), adopt=True)
    async with open_app(settings, deliverers={"discord": delivery}, config=config) as app:
        job = await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="x", count=2))
        deadline = time.monotonic() + 10
        while not (latest := await app.store.get_job(job.id)) or not latest.undeliverable:
            assert time.monotonic() < deadline, f"not given up after {attempts} attempts"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # many delivery scans later: no further attempt
        assert attempts == 3 and delivery.delivered == []
        assert latest.refunded and (await app.runner.usage(ALICE)).used_today == 0
        assert [j.undeliverable for j in await app.store.list_jobs(ALICE)] == [True]

    env = clean_env(DATABASE_URL=settings.database_url)
    proc = await asyncio.create_subprocess_exec(ATELIER, "jobs", "--all", "--json", cwd=tmp_path, env=env,
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    (listed,) = [json.loads(line) for line in out.decode().splitlines()]
    assert listed["job_id"] == job.id and listed["state"] == "succeeded" and listed["undeliverable"] is True
    proc = await asyncio.create_subprocess_exec(ATELIER, "jobs", "--all", cwd=tmp_path, env=env,
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert "succeeded" in out.decode() and "undeliverable" in out.decode()
