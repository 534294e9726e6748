"""SIGKILL with jobs in every state at once — waiting for a slot, queued and running at a provider, finished but
not yet delivered — then a restart: every job is delivered exactly once, no provider job is submitted twice, and
the buttons on results posted before the crash still work."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import png_bytes
from tests.e2e.conftest import E2E
from tests.e2e.harness import started_job
from tests.fakes.discord import Channel, MemberActor

pytestmark = pytest.mark.asyncio(loop_scope="session")

PHOTO = png_bytes(180, 150, (70, 120, 60))
NOVITA_POLL = "/v3/async/task-result"
FAL_STATUS = "/status"
GLAM_RESULT = "/result/"
MESSAGES = "/channels/{channel_id}/messages"


async def start(member: MemberActor, channel: Channel, command: str, **options: Any) -> int:
    run = await member.run_command(channel, command, **options)
    return started_job((await run.reply()).content)


async def submitted(e2e: E2E) -> dict[str, int]:
    return {name: len((await e2e.providers.stats(name))["jobs"]) for name in ("novita", "fal", "glam")}


async def test_sigkill_with_jobs_in_every_state_then_restart_delivers_each_once(e2e: E2E) -> None:
    await e2e.quiesce()
    alice, bob, carol, dave, erin = [await e2e.member(n) for n in ("alice", "bob", "carol", "dave", "erin")]
    quiet = await e2e.guild.create_channel("crash-undelivered")

    # Before the crash: a finished, delivered job whose buttons must still work afterwards.
    old = await start(erin, e2e.channel, "imagine", prompt="an old result")
    old_result = await e2e.result(old)
    await e2e.job(old)
    before = await submitted(e2e)

    # Finished but undelivered: its result post meets a 429 with a minute to wait, and the bot is killed meanwhile.
    await e2e.providers.hold("novita", NOVITA_POLL)
    finished = await start(alice, quiet, "imagine", prompt="finished, not delivered")
    e2e.discord.rate_limit_next(1, route=MESSAGES, retry_after=60)
    await e2e.providers.release("novita")
    await e2e.job(finished)  # succeeded in the database...
    await e2e.discord.wait_for(lambda: any(c.status == 429 for c in e2e.discord.calls("POST", MESSAGES)),
                               what="the result post to be rate-limited")
    assert e2e.results_of(finished, quiet) == []  # ...but not in the channel

    # Queued at Novita: three polls would say "queued"; after the first, polls hang.
    await e2e.providers.script("novita", queue_polls=3, running_polls=1)
    queued = await start(bob, e2e.channel, "imagine", prompt="queued")
    await e2e.job(queued, state="queued")
    await e2e.providers.hold("novita", NOVITA_POLL)

    # Running at fal.
    await e2e.providers.script("fal", queue_polls=0, running_polls=3)
    running = await start(carol, e2e.channel, "edit", image=("room.png", PHOTO), prompt="running")
    await e2e.job(running, state="running")
    await e2e.providers.hold("fal", FAL_STATUS)

    # Waiting for a slot: Glam runs two jobs at once; both hang at the provider, the third waits in line.
    await e2e.providers.hold("glam", GLAM_RESULT)
    at_glam = [await start(dave, e2e.channel, "filter", image=("me.png", PHOTO), name="real_sunset")
               for _ in range(2)]
    await e2e.discord.wait_for(lambda: all((e2e.db.job(j) or {}).get("handle") for j in at_glam), poll=0.1,
                               what="two filter jobs at Glam")
    waiting = await start(dave, e2e.channel, "filter", image=("me.png", PHOTO), name="real_sunset")
    await e2e.job(waiting, state="pending")
    assert (e2e.db.job(waiting) or {}).get("handle") is None

    await e2e.bot.kill()
    for name in ("novita", "fal", "glam"):
        await e2e.providers.release(name)
    await e2e.providers.script("novita", queue_polls=1, running_polls=1)
    await e2e.providers.script("fal", queue_polls=1, running_polls=1)
    await e2e.bot.start()

    jobs = [finished, queued, running, *at_glam, waiting]
    await e2e.discord.wait_for(lambda: e2e.results_of(finished, quiet), timeout=40, what="the undelivered result")
    for job_id in jobs[1:]:
        await e2e.result(job_id, timeout=40)
    await e2e.quiesce(timeout=40)
    for job_id in jobs:
        channel = quiet if job_id == finished else e2e.channel
        delivered = len(e2e.results_of(job_id, channel))
        assert delivered == 1, f"job #{job_id} delivered {delivered}×"
        assert (await e2e.job(job_id))["state"] == "succeeded"
    # Each job reached its provider once: the restart followed the stored handles and never submitted again.
    after = await submitted(e2e)
    assert after == {"novita": before["novita"] + 2, "fal": before["fal"] + 1, "glam": before["glam"] + 3}

    # A button on a result posted before the crash still works, and charges whoever clicked.
    click = await bob.click(old_result, "Retry")
    assert await click.acked() < 3.0
    again = started_job((await click.reply()).content)
    await e2e.result(again)
    assert (await e2e.job(again))["user_id"] == str(bob.id)
