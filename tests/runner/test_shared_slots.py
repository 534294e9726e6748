"""Provider slots shared by every process on one PostgreSQL database: three real runner processes with 30 jobs
between them never have more than FAL_MAX_PARALLEL=2 requests open at the fal fake, and no job is sent twice."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.store import open_store
from bot.store.models import JobState
from tests.fakes.base import JobScript
from tests.fakes.fal import FakeFal
from tests.harness.spawn import start_runner_process
from tests.pg import fresh_database

PROCESSES = 3
JOBS_EACH = 10


@pytest.fixture
def database() -> Iterator[str]:
    with fresh_database() as url:
        yield url


@pytest.fixture
async def fal() -> AsyncIterator[FakeFal]:
    server = FakeFal(key="slots-key")
    server.script = JobScript(duration_s=0.3)
    await server.start()
    yield server
    await server.stop()


async def test_three_processes_never_exceed_the_providers_parallel_cap(tmp_path: Path, database: str,
                                                                       fal: FakeFal) -> None:
    env = {"DATABASE_URL": database, "FAL_KEY": fal.key, "FAL_QUEUE_URL": fal.base_url, "FAL_MAX_PARALLEL": "2",
           "POLL_MIN_S": "0.05", "POLL_MAX_S": "0.1", "QUOTA_CONCURRENT": "10"}
    for n in range(PROCESSES):
        (tmp_path / f"p{n}").mkdir()
    processes = [await start_runner_process(tmp_path / f"p{n}", env, "--create", str(JOBS_EACH))
                 for n in range(PROCESSES)]
    try:
        store = await open_store(database)
        try:
            deadline = time.monotonic() + 90
            while True:
                jobs = await store.list_jobs(limit=100)
                delivered = [await store.is_delivered(j.id, "discord") for j in jobs]
                if len(jobs) == PROCESSES * JOBS_EACH and all(delivered):
                    break
                assert time.monotonic() < deadline, f"{sum(delivered)} of {len(jobs)} jobs delivered"
                await asyncio.sleep(0.1)
        finally:
            await store.close()
        assert {j.state for j in jobs} == {JobState.SUCCEEDED}
        # The cap held across the processes, and was used: two at once, never three.
        assert fal.most_open == 2
        assert len(fal.calls("POST")) == PROCESSES * JOBS_EACH  # each job submitted exactly once
        lines = [json.loads(line) for n in range(PROCESSES)
                 for line in (tmp_path / f"p{n}" / "deliveries.jsonl").read_text().splitlines()
                 if (tmp_path / f"p{n}" / "deliveries.jsonl").exists()]
        assert sorted(line["job_id"] for line in lines) == sorted(j.id for j in jobs)  # each delivered once
    finally:
        for proc in processes:
            proc.kill()
            await proc.wait()
