"""SIGKILL the real runner process while Novita's Seedream call (synchronous: the answer carries the images) is
on the wire; start it again; the job ends interrupted and refunded, and the call was sent exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.store import open_store
from bot.store.models import JobState
from tests.fakes.novita import FakeNovita

ROOT = Path(__file__).resolve().parents[2]
SEEDREAM = "/v3/seedream-5.0-lite"


@pytest.fixture
async def novita() -> AsyncIterator[FakeNovita]:
    server = FakeNovita(key="crash-key")
    await server.start()
    yield server
    await server.stop()


async def start_runner(tmp_path: Path, novita: FakeNovita, *extra: str) -> asyncio.subprocess.Process:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(ROOT),
           "DATABASE_URL": f"sqlite:///{tmp_path}/atelier.db", "NOVITA_API_KEY": novita.key,
           "NOVITA_BASE_URL": novita.base_url, "LEASE_SECONDS": "30", "LOG_LEVEL": "WARNING"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.harness.runner_proc", "--deliveries", str(tmp_path / "deliveries.jsonl"),
        "--provider", "novita", *extra, cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line, "runner process exited early"
        if line.strip() == "READY":
            return proc


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
