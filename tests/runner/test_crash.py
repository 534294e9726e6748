"""SIGKILL the real runner process with jobs waiting, at the provider and finished-but-undelivered; start it
again; every job completes, each is delivered exactly once, and no provider job is submitted twice."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.store import open_store
from bot.store.models import JobState
from tests.fakes.base import JobScript
from tests.fakes.fal import FakeFal
from tests.harness.spawn import start_runner_process


@pytest.fixture
async def fal() -> AsyncIterator[FakeFal]:
    server = FakeFal(key="crash-key")
    await server.start()
    yield server
    await server.stop()


async def start_runner(tmp_path: Path, fal: FakeFal, *extra: str) -> asyncio.subprocess.Process:
    return await start_runner_process(
        tmp_path, {"FAL_KEY": fal.key, "FAL_QUEUE_URL": fal.base_url, "FAL_MAX_PARALLEL": "2", "POLL_MIN_S": "0.05",
                   "POLL_MAX_S": "0.2"}, "--block", str(tmp_path / "block"), *extra)


async def wait_until(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_sigkill_in_every_state_then_restart_delivers_each_job_once(tmp_path: Path, fal: FakeFal) -> None:
    fal.scripts = [JobScript(duration_s=0.3), JobScript(duration_s=0.3),  # finish, then sit undelivered
                   JobScript(duration_s=5.0), JobScript(duration_s=5.0),  # at the provider when killed
                   JobScript(duration_s=0.3), JobScript(duration_s=0.3)]  # still waiting for a slot
    (tmp_path / "block").touch()
    store = await open_store(f"sqlite:///{tmp_path}/atelier.db")
    proc = await start_runner(tmp_path, fal, "--create", "6")

    async def states() -> list[JobState]:
        return [j.state for j in sorted(await store.list_jobs(None, limit=10), key=lambda j: j.id)]

    async def mixed() -> bool:
        s = await states()
        return len(s) == 6 and s[:2] == [JobState.SUCCEEDED] * 2 and \
            all(x in (JobState.QUEUED, JobState.RUNNING) for x in s[2:4]) and s[4:] == [JobState.PENDING] * 2

    try:
        await wait_until(mixed)
    except AssertionError:
        proc.kill()
        raise AssertionError(f"never saw the mixed state; last: {await states()}") from None
    proc.send_signal(signal.SIGKILL)
    await asyncio.wait_for(proc.wait(), 10)
    assert not (tmp_path / "deliveries.jsonl").exists()
    submits_before = len(fal.calls("POST"))
    assert submits_before == 4

    (tmp_path / "block").unlink()
    proc = await start_runner(tmp_path, fal)
    try:
        async def all_delivered() -> bool:
            path = tmp_path / "deliveries.jsonl"
            return path.exists() and len(path.read_text().splitlines()) >= 6

        await wait_until(all_delivered)
        await asyncio.sleep(0.5)  # anything delivered twice would show up now
    finally:
        proc.kill()
        await asyncio.wait_for(proc.wait(), 10)

    lines = [json.loads(line) for line in (tmp_path / "deliveries.jsonl").read_text().splitlines()]
    assert sorted(d["job_id"] for d in lines) == [1, 2, 3, 4, 5, 6]
    assert all(d["state"] == "succeeded" and len(d["images"]) == 1 for d in lines)
    assert await states() == [JobState.SUCCEEDED] * 6
    # One submit per job at the provider: nothing was sent twice.
    assert len(fal.calls("POST")) == 6
    assert len(fal.jobs) == 6
    await store.close()
