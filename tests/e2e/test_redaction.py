"""A provider that echoes the bot's key in what it says, end to end: the real bot process against the fake
Discord and the provider fakes. Neither the public failure caption, the stored job nor the member's `/jobs`
shows the key, wherever the provider put it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import png_bytes
from tests.e2e.conftest import E2E
from tests.e2e.harness import PROVIDER_KEY
from tests.e2e.test_provider_faults import FAL_STATUS, delivered_once, start

pytestmark = pytest.mark.asyncio(loop_scope="session")

PHOTO = png_bytes(160, 140, (30, 90, 160))
ECHO = f"Authorization: Bearer {PROVIDER_KEY} is over its limit for {PROVIDER_KEY}"


async def novita_reason(e2e: E2E) -> tuple[str, dict[str, Any]]:
    await e2e.providers.script("novita", queue_polls=1, running_polls=1, outcome="fail", fail_reason=ECHO)
    return "imagine", {"prompt": "a quiet harbour"}


async def fal_result_detail(e2e: E2E) -> tuple[str, dict[str, Any]]:
    await e2e.providers.script("fal", queue_polls=1, running_polls=1, outcome="fail", fail_reason=ECHO)
    return "edit", {"image": ("harbour.png", PHOTO), "prompt": "a quiet harbour"}


async def fal_unknown_status(e2e: E2E) -> tuple[str, dict[str, Any]]:
    await e2e.providers.fail_next("fal", 200, {"status": f"{ECHO}", "logs": None}, times=20, method="GET",
                                  path_contains=FAL_STATUS)
    return "edit", {"image": ("harbour.png", PHOTO), "prompt": "a quiet harbour"}


@pytest.mark.parametrize("echo", [novita_reason, fal_result_detail, fal_unknown_status])
async def test_a_provider_text_echoing_the_key_is_shown_without_it(e2e: E2E, echo: Any) -> None:
    await e2e.quiesce()  # no earlier job may take these faults
    alice = await e2e.member("alice")
    command, options = await echo(e2e)

    job_id = await start(e2e, alice, command, **options)
    result, job = await delivered_once(e2e, job_id, "failed")
    assert f"job #{job_id} failed:" in result.content, result.content
    assert PROVIDER_KEY not in result.content
    assert job["error_message"] and PROVIDER_KEY not in job["error_message"]
    assert "***" in job["error_message"]  # the provider's words are kept, the key masked

    jobs = await (await alice.run_command(e2e.channel, "jobs")).reply()
    assert f"#{job_id}" in jobs.content and jobs.ephemeral
    assert PROVIDER_KEY not in jobs.content and PROVIDER_KEY not in str(jobs.embeds)
