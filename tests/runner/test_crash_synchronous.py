"""SIGKILL the real runner process while Novita's Seedream call (synchronous: the answer carries the images) is
on the wire; start it again; the job ends interrupted and refunded, and the call was sent exactly once."""

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


@pytest.fixture
async def novita() -> AsyncIterator[FakeNovita]:
    server = FakeNovita(key="crash-key")
    await server.start()
    yield server
    await server.stop()


async def start_runner(tmp_path: Path, novita: FakeNovita, *extra: str) -> asyncio.subprocess.Process:
    return await start_runner_process(
        tmp_path, {"NOVITA_API_KEY": novita.key, "NOVITA_BASE_URL": novita.base_url}, "--provider", "novita", *extra)


async def test_sigkill_during_the_call_then_restart_ends_the_job_interrupted_and_refunded(
        tmp_path: Path, novita: FakeNovita) -> None:
    novita.hold_paths = [SEEDREAM]  # the call is on the wire and never answered while the process lives
    store = await open_store(f"sqlite:///{tmp_path}/atelier.db")
    proc = await start_runner(tmp_path, novita, "--create", "1")
    try:
        deadline = time.monotonic() + 20
        while not novita.calls("POST", SEEDREAM):
            assert time.monotonic() < deadline, "the call never reached the fake"
            await asyncio.sleep(0.02)
        (job,) = await store.list_jobs(None)
        assert job.state is JobState.RUNNING
        proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 10)
        novita.release.set()

        proc = await start_runner(tmp_path, novita)
        deliveries = tmp_path / "deliveries.jsonl"
        deadline = time.monotonic() + 20
        while not deliveries.exists():
            assert time.monotonic() < deadline, "the job was never finished after the restart"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # anything sent again would arrive now
    finally:
        proc.kill()
        await asyncio.wait_for(proc.wait(), 10)
    done = await store.get_job(job.id)
    assert done is not None
    usage = await store.scope_usage("guild:1", now=done.created_at)
    await store.close()
    assert [json.loads(line) for line in deliveries.read_text().splitlines()] == \
        [{"job_id": job.id, "state": "failed", "images": []}]
    assert done.state is JobState.FAILED and done.error_code == "interrupted"
    assert done.refunded and done.error_message is not None and "not sent again" in done.error_message
    assert usage == [("100", 0, 1)]  # the member's image was given back; the job itself is on record
    assert len(novita.calls("POST", SEEDREAM)) == 1  # exactly one call at the provider
