"""What bot processes on one PostgreSQL database coordinate to share Discord's gateway, raced by real processes:
each range of shards goes to one live process and a dead process's range is free at once; IDENTIFY turns of one
bucket are spaced across processes; the slash commands are published by one process, and again after a process
died while publishing."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.shards.plan import ShardPlan
from bot.store import PostgresJobStore

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def joined(pg: PostgresJobStore) -> PostgresJobStore:
    """The store, this test process registered on it (as a bot process is before it claims shards)."""
    await pg.join("test:1:x", host="test-host", pid=os.getpid())
    return pg


class Racers:
    def __init__(self, url: str) -> None:
        self.url = url
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self, n: int, mode: str, arg: str = "") -> list[asyncio.subprocess.Process]:
        started = []
        for i in range(n):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.store.gateway_racer", self.url, f"racer:{i}:{mode}", mode, arg,
                cwd=REPO, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            self.procs.append(proc)
            started.append(proc)
        for proc in started:
            assert await self.line(proc, timeout=30) == "ready"
        for proc in started:  # all at once
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
        for proc in started:
            assert proc.stdin is not None
            await proc.stdin.drain()
        return started

    @staticmethod
    async def line(proc: asyncio.subprocess.Process, timeout: float = 30) -> str:
        assert proc.stdout is not None
        return (await asyncio.wait_for(proc.stdout.readline(), timeout)).decode().strip()

    async def close(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()


@pytest.fixture
async def racers(pg_url: str) -> AsyncIterator[Racers]:
    group = Racers(pg_url)
    try:
        yield group
    finally:
        await group.close()


def test_ranges_cover_every_shard_once() -> None:
    assert ShardPlan(4, None, 2).ranges() == [(0, 1), (2, 3)]
    assert ShardPlan(5, None, 2).ranges() == [(0, 1), (2, 3), (4,)]
    assert ShardPlan(3, None, 1).ranges() == [(0,), (1,), (2,)]


async def test_each_range_goes_to_one_process_and_a_dead_ones_range_is_free_at_once(
        joined: PostgresJobStore, racers: Racers) -> None:
    procs = await racers.start(5, "claim", "4:2")
    answers = {proc: await racers.line(proc) for proc in procs}
    claimed = sorted(a for a in answers.values() if a != "none")
    assert claimed == ["0,1", "2,3"], answers  # five processes, two ranges: each range once, three stand by
    # Every range is served: this process gets none, however often it asks.
    assert await joined.claim_shards(4, ShardPlan(4, None, 2).ranges()) is None
    held = {a: p for p, a in answers.items() if a != "none"}
    assert {(c, ids, alive) for c, ids, _, alive in await joined.shard_claims()} == {(4, (0, 1), True),
                                                                                (4, (2, 3), True)}
    held["2,3"].kill()
    await held["2,3"].wait()
    # No lease to lapse: the server dropped the dead process's liveness lock with its connection.
    assert await joined.claim_shards(4, ShardPlan(4, None, 2).ranges()) == (2, 3)
    # And this process keeps what it claimed when it asks again.
    assert await joined.claim_shards(4, ShardPlan(4, None, 2).ranges()) == (2, 3)


async def test_identify_turns_of_one_bucket_are_spaced_across_processes(racers: Racers) -> None:
    procs = await racers.start(3, "identify", "3")
    times = sorted([float(await racers.line(p, timeout=60)) for p in procs for _ in range(3)])
    assert len(times) == 9
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # One turn per second in bucket 0 across all three processes (a little slack for printing after the turn).
    assert min(gaps) > 0.9, gaps


async def test_the_commands_are_published_once_by_one_process(racers: Racers) -> None:
    procs = await racers.start(4, "publish")
    answers = []
    for proc in procs:
        while (line := await racers.line(proc)) == "publishing":
            answers.append(line)
        answers.append(line)
    assert sorted(answers) == ["published", "publishing", "skipped", "skipped", "skipped"]


async def test_a_process_killed_while_publishing_leaves_the_commands_to_publish(joined: PostgresJobStore,
                                                                               racers: Racers) -> None:
    [hung] = await racers.start(1, "publish", "hang")
    assert await racers.line(hung) == "publishing"
    hung.kill()
    await hung.wait()
    published: list[str] = []

    async def publish() -> None:
        published.append("now")

    assert await joined.sync_commands_once("guild:1", "digest-1", publish) is True
    assert published == ["now"]
    assert await joined.sync_commands_once("guild:1", "digest-1", publish) is False  # recorded this time
    assert await joined.sync_commands_once("guild:1", "digest-2", publish) is True  # the commands changed
    assert published == ["now", "now"]
