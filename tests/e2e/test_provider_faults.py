"""Providers misbehaving, end to end: throttling, outages on status polls, a job that never ends, a job the
provider fails, and a rejected key. Each test checks what the member notices, what the bot's database says,
and what reached the provider (the fakes log every request with what they answered and when)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from tests.conftest import png_bytes
from tests.e2e.conftest import E2E
from tests.e2e.harness import started_job
from tests.fakes.discord import MemberActor, Message

pytestmark = pytest.mark.asyncio(loop_scope="session")

PHOTO = png_bytes(180, 150, (70, 120, 40))
NOVITA_SUBMIT, NOVITA_POLL = "/v3/async/glm-image", "/v3/async/task-result"
FAL_SUBMIT, FAL_STATUS = "/fal-ai/glm-image/image-to-image", "/status"



async def start(e2e: E2E, member: MemberActor, command: str, **options: Any) -> int:
    run = await member.run_command(e2e.channel, command, **options)
    assert await run.acked() < 3.0
    reply = await run.reply()
    assert reply.ephemeral
    return started_job(reply.content)


async def delivered_once(e2e: E2E, job_id: int, state: str) -> tuple[Message, dict[str, Any]]:
    """The job's one result message and its row, once the job is `state` and nothing is left owed."""
    result = await e2e.result(job_id)
    await e2e.job(job_id, state=state)
    await e2e.quiesce()  # its delivery is recorded: a second post now would be a duplicate
    assert e2e.results_of(job_id) == [result]
    job = e2e.db.job(job_id)
    assert job is not None and job["state"] == state
    assert job["message_id"] == str(result.id)
    return result, job


async def quota_line(e2e: E2E, member: MemberActor) -> str:
    return (await (await member.run_command(e2e.channel, "quota")).reply()).content


@asynccontextmanager
async def bot_settings(e2e: E2E, **settings: str) -> AsyncIterator[None]:
    """Run the bot process with these settings for the block, then as before (a clean stop and start each way)."""
    saved = {name: e2e.bot.env.get(name) for name in settings}
    e2e.bot.env.update(settings)
    try:
        await e2e.bot.stop()
        await e2e.bot.start()
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                e2e.bot.env.pop(name, None)
            else:
                e2e.bot.env[name] = value
        await e2e.bot.stop()
        await e2e.bot.start()


async def test_a_429_storm_is_waited_out_as_told_and_the_job_is_sent_once(e2e: E2E) -> None:
    await e2e.quiesce()  # no earlier job may take these faults
    alice = await e2e.member("alice")
    jobs_before = len((await e2e.providers.stats("novita"))["jobs"])
    mark = len(await e2e.providers.request_log("novita"))
    throttled = {"code": 429, "reason": "RATE_LIMIT_EXCEEDED", "message": "too many requests"}
    for path, method in ((NOVITA_SUBMIT, "POST"), (NOVITA_POLL, "GET")):
        await e2e.providers.fail_next("novita", 429, throttled, times=3, headers={"Retry-After": "0.3"},
                                      method=method, path_contains=path)

    job_id = await start(e2e, alice, "imagine", prompt="a heron in the rain")
    result, job = await delivered_once(e2e, job_id, "succeeded")
    assert result.attachments and "novita" in result.content
    assert job["provider"] == "novita" and job["charged"] == 1 and job["refunded"] == 0
    assert e2e.db.images_charged(alice.id) == 1

    log = (await e2e.providers.request_log("novita"))[mark:]
    submits = [r for r in log if r["path"] == NOVITA_SUBMIT]
    polls = [r for r in log if r["path"] == NOVITA_POLL]
    assert [r["status"] for r in submits] == [429, 429, 429, 200]
    assert [r["status"] for r in polls][:4] == [429, 429, 429, 200]
    # One job at the provider: the throttled submits created nothing, and the one that passed was not repeated.
    assert len((await e2e.providers.stats("novita"))["jobs"]) == jobs_before + 1
    # Every request after a 429 came at least the Retry-After later.
    for calls in (submits, polls[:4]):
        gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(calls)]
        assert all(gap >= 0.3 for gap in gaps), gaps


async def test_status_polls_answered_503_are_retried_and_the_job_succeeds(e2e: E2E) -> None:
    await e2e.quiesce()
    alice = await e2e.member("alice")
    jobs_before = len((await e2e.providers.stats("fal"))["jobs"])
    mark = len(await e2e.providers.request_log("fal"))
    # Seven in a row: more than one poll's own retries (HTTP_MAX_ATTEMPTS, 5), so the poll loop must carry on too.
    await e2e.providers.fail_next("fal", 503, {"detail": "upstream unavailable"}, times=7, method="GET",
                                  path_contains=FAL_STATUS)

    job_id = await start(e2e, alice, "edit", image=("garden.png", PHOTO), prompt="add snow")
    result, job = await delivered_once(e2e, job_id, "succeeded")
    assert result.attachments and "fal" in result.content
    assert job["provider"] == "fal" and job["charged"] == 1 and job["refunded"] == 0
    assert e2e.db.images_charged(alice.id) == 1

    log = (await e2e.providers.request_log("fal"))[mark:]
    assert [r["status"] for r in log if r["method"] == "POST"] == [200]
    statuses = [r["status"] for r in log if r["path"].endswith(FAL_STATUS)]
    assert statuses[:7] == [503] * 7 and statuses[-1] == 200, statuses
    assert len((await e2e.providers.stats("fal"))["jobs"]) == jobs_before + 1


async def test_a_job_that_never_ends_fails_at_its_deadline_refunded_and_cancelled_at_fal(e2e: E2E) -> None:
    await e2e.quiesce()  # the bot is restarted below: nothing may be in flight
    alice, bob = await e2e.member("alice"), await e2e.member("bob")
    async with bot_settings(e2e, JOB_DEADLINES='{"edit": 3}'):
        await e2e.providers.script("fal", queue_polls=1, running_polls=1, outcome="never")
        mark = len(await e2e.providers.request_log("fal"))
        job_id = await start(e2e, alice, "edit", image=("pier.png", PHOTO), prompt="at night")
        status = e2e.status_message(job_id)
        assert status is not None

        result, job = await delivered_once(e2e, job_id, "failed")
        # The member is told, in the channel, why and that it cost nothing.
        assert alice.mention in result.content and bob.can_see(result)
        assert f"job #{job_id} failed: it did not finish before its deadline; it was cancelled at the provider." \
            in result.content, result.content
        assert "Nothing was charged to your quota." in result.content
        assert result.attachments == []
        await e2e.discord.wait_for(lambda: "❌ failed" in status.content, what="the status message to say failed")
        assert job["error_code"] == "deadline" and job["refunded"] == 1 and job["charged"] == 0
        assert e2e.db.images_charged(alice.id) == 0
        assert "You have used **0** of **25**" in await quota_line(e2e, alice)

        # fal was asked to stop the job, and agreed; nothing was asked of it after that.
        log = (await e2e.providers.request_log("fal"))[mark:]
        cancels = [r for r in log if r["method"] == "PUT"]
        assert len(cancels) == 1 and cancels[0]["path"].endswith("/cancel") and cancels[0]["status"] == 202
        assert log[-1] == cancels[0], log
        # The poll loop gave up at the deadline, not earlier: three seconds of polls from the submit.
        assert cancels[0]["at"] - log[0]["at"] >= 2.5


async def test_a_job_the_provider_fails_shows_its_reason_and_costs_nothing(e2e: E2E) -> None:
    alice, bob = await e2e.member("alice"), await e2e.member("bob")
    reason = "The prompt was rejected by the content filter"
    await e2e.providers.script("novita", queue_polls=1, running_polls=1, outcome="fail", fail_reason=reason)

    job_id = await start(e2e, alice, "imagine", prompt="something not allowed")
    result, job = await delivered_once(e2e, job_id, "failed")
    assert f"job #{job_id} failed: {reason}." in result.content, result.content
    assert "Nothing was charged to your quota." in result.content
    assert alice.mention in result.content and bob.can_see(result)
    assert result.attachments == [] and "Delete" not in result.labels()  # nothing to delete; Retry is offered
    assert "Retry" in result.labels()
    assert job["provider"] == "novita" and job["error_message"] == reason and job["refunded"] == 1
    assert job["outputs"] in (None, [])
    assert e2e.db.images_charged(alice.id) == 0
    assert "You have used **0** of **25**" in await quota_line(e2e, alice)


async def test_a_rejected_key_moves_the_job_to_the_next_provider_and_charges_once(e2e: E2E) -> None:
    await e2e.quiesce()
    alice = await e2e.member("alice")
    before = {name: len((await e2e.providers.stats(name))["jobs"]) for name in ("novita", "pixazo")}
    mark = len(await e2e.providers.request_log("novita"))
    await e2e.providers.fail_next("novita", 401, {"code": 401, "reason": "INVALID_API_KEY",
                                                  "message": "Invalid API key, please check it and try again."},
                                  method="POST", path_contains=NOVITA_SUBMIT)

    job_id = await start(e2e, alice, "imagine", prompt="a kite over the dunes")
    result, job = await delivered_once(e2e, job_id, "succeeded")
    assert result.attachments and "pixazo" in result.content
    assert job["provider"] == "pixazo" and job["charged"] == 1 and job["refunded"] == 0
    made = await e2e.providers.output_bytes("pixazo", job["handle"]["remote_id"])
    assert [a.data for a in result.attachments] == made

    # Novita heard one submit, refused it, and was asked nothing more; it holds no job.
    assert [(r["method"], r["status"]) for r in (await e2e.providers.request_log("novita"))[mark:]] == [("POST", 401)]
    assert len((await e2e.providers.stats("novita"))["jobs"]) == before["novita"]
    assert len((await e2e.providers.stats("pixazo"))["jobs"]) == before["pixazo"] + 1
    # Charged once, for the one image delivered.
    assert [j["id"] for j in e2e.db.jobs_of(alice.id)] == [job_id]
    assert e2e.db.images_charged(alice.id) == 1
    assert "You have used **1** of **25**" in await quota_line(e2e, alice)
