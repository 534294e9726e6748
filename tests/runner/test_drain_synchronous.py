"""SIGTERM while Novita's Seedream call (synchronous: the answer carries the images) is on the wire and outlasts
the grace: the process still exits 0 within SHUTDOWN_GRACE_S, leaving the call as a crash would; the next process
ends the job as interrupted and refunded, and the call was sent exactly once."""

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
from tests.fakes.novita import FakeNovita
from tests.harness.spawn import start_runner_process

SEEDREAM = "/v3/seedream-5.0-lite"
# Long enough that closing fits the reserve the drain keeps (a quarter of it) on a loaded machine.
GRACE_S = 10.0


@pytest.fixture
async def novita() -> AsyncIterator[FakeNovita]:
    server = FakeNovita(key="drain-key")
    await server.start()
    yield server
    await server.stop()


async def start_runner(tmp_path: Path, novita: FakeNovita, *extra: str) -> asyncio.subprocess.Process:
    return await start_runner_process(
        tmp_path, {"NOVITA_API_KEY": novita.key, "NOVITA_BASE_URL": novita.base_url,
                   "SHUTDOWN_GRACE_S": str(GRACE_S)}, "--provider", "novita", *extra)


async def test_sigterm_during_a_call_longer_than_the_grace_exits_0_and_the_job_ends_interrupted(
        tmp_path: Path, novita: FakeNovita) -> None:
    novita.hold_paths = [SEEDREAM]  # the call is on the wire and never answered while the process lives
    store = await open_store(f"sqlite:///{tmp_path}/atelier.db")
    proc = await start_runner(tmp_path, novita, "--create", "1", "--drain")
    try:
        deadline = time.monotonic() + 20
        while not novita.calls("POST", SEEDREAM):
            assert time.monotonic() < deadline, "the call never reached the fake"
            await asyncio.sleep(0.02)
        (job,) = await store.list_jobs(None)
        assert job.state is JobState.RUNNING
        proc.send_signal(signal.SIGTERM)
        began = time.monotonic()
        code = await asyncio.wait_for(proc.wait(), GRACE_S + 10)
        elapsed = time.monotonic() - began
        assert code == 0
        assert elapsed < GRACE_S, f"took {elapsed:.1f} s"
        left = await store.get_job(job.id)
        assert left is not None and left.state is JobState.RUNNING and left.lease_owner is None  # handed back
        novita.release.set()

        proc = await start_runner(tmp_path, novita)
        deliveries = tmp_path / "deliveries.jsonl"
        deadline = time.monotonic() + 20
        while not deliveries.exists():
            assert time.monotonic() < deadline, "the job was never finished after the restart"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # anything sent again would arrive now
    finally:
        if proc.returncode is None:
            proc.kill()
        await asyncio.wait_for(proc.wait(), 10)
    done = await store.get_job(job.id)
    assert done is not None
    await store.close()
    assert [json.loads(line) for line in deliveries.read_text().splitlines()] == \
        [{"job_id": job.id, "state": "failed", "images": []}]
    assert done.state is JobState.FAILED and done.error_code == "interrupted" and done.refunded
    assert len(novita.calls("POST", SEEDREAM)) == 1  # exactly one call at the provider
