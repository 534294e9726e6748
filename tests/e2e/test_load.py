"""A busy moment, end to end: many members start jobs at once. Each is answered in time and gets one result.

Heavier load (thousands of jobs, latency percentiles) belongs to bench/, not here.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.e2e.conftest import E2E
from tests.e2e.harness import started_job
from tests.fakes.discord import InteractionRun, MemberActor

pytestmark = pytest.mark.asyncio(loop_scope="session")

MEMBERS = 50
SPREAD_S = 1.0  # every command starts within this second


async def test_fifty_members_starting_jobs_within_a_second_each_get_one_result(e2e: E2E) -> None:
    await e2e.quiesce()
    # Short jobs: the test is about the bot's handling of many at once, not about waiting for a provider.
    await e2e.providers.script("novita", duration_s=0.3)
    jobs_before = len((await e2e.providers.stats("novita"))["jobs"])
    members = [await e2e.member(f"m{i}") for i in range(MEMBERS)]

    async def one(index: int, member: MemberActor) -> InteractionRun:
        await asyncio.sleep(SPREAD_S * index / MEMBERS)  # a small spread, as people press Enter
        return await member.run_command(e2e.channel, "imagine", prompt=f"a lantern, number {index}")

    runs = await asyncio.gather(*(one(i, m) for i, m in enumerate(members)))
    latencies = [await run.acked() for run in runs]
    assert max(latencies) < 3.0, sorted(latencies)[-5:]
    answers = [await run.reply() for run in runs]
    assert all(a.ephemeral for a in answers)
    job_ids = [started_job(a.content) for a in answers]
    assert len(set(job_ids)) == MEMBERS

    # Every result lands, in the channel, mentioning its member.
    for member, job_id in zip(members, job_ids, strict=True):
        result = await e2e.result(job_id, timeout=60)
        assert result.attachments and member.mention in result.content
    await e2e.quiesce(timeout=60)  # every delivery recorded: anything posted from now on would be a duplicate

    nonces = Counter(m.nonce for m in e2e.channel.live() if not m.ephemeral and m.nonce is not None)
    assert all(len(e2e.results_of(job_id)) == 1 for job_id in job_ids), nonces
    assert all(e2e.status_message(job_id) is not None for job_id in job_ids), nonces
    assert set(nonces.values()) == {1}, nonces  # every post its own nonce
    assert len([m for m in e2e.channel.live() if not m.ephemeral]) == 2 * MEMBERS  # a status and a result each

    for member, job_id in zip(members, job_ids, strict=True):
        job = e2e.db.job(job_id)
        assert job is not None and job["state"] == "succeeded", job
        assert job["user_id"] == str(member.id) and job["provider"] == "novita"
        assert job["charged"] == 1 and job["refunded"] == 0 and job["message_id"] is not None
        assert e2e.db.images_charged(member.id) == 1
    assert len((await e2e.providers.stats("novita"))["jobs"]) == jobs_before + MEMBERS  # one submit each
