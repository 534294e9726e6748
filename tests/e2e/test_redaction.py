"""A provider that echoes the bot's key in a failure reason, end to end: the real bot process against the fake
Discord. Neither the public failure caption nor the member's `/jobs` shows the key."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import E2E
from tests.e2e.harness import PROVIDER_KEY
from tests.e2e.test_provider_faults import delivered_once, start

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_failure_reason_echoing_the_key_is_shown_without_it(e2e: E2E) -> None:
    alice = await e2e.member("alice")
    reason = f"Authorization: Bearer {PROVIDER_KEY} is over its limit for {PROVIDER_KEY}"
    await e2e.providers.script("novita", queue_polls=1, running_polls=1, outcome="fail", fail_reason=reason)

    job_id = await start(e2e, alice, "imagine", prompt="a quiet harbour")
    result, job = await delivered_once(e2e, job_id, "failed")
    assert f"job #{job_id} failed:" in result.content and "is over its limit" in result.content, result.content
    assert PROVIDER_KEY not in result.content
    assert PROVIDER_KEY not in (job["error_message"] or "") and "is over its limit" in job["error_message"]

    jobs = await (await alice.run_command(e2e.channel, "jobs")).reply()
    assert f"#{job_id}" in jobs.content and jobs.ephemeral
    assert PROVIDER_KEY not in jobs.content and PROVIDER_KEY not in str(jobs.embeds)
