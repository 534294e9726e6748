"""Several processes on one database: a bot and `atelier worker`s, each the real process.

The bot is SIGKILLed with jobs in every state — waiting for a slot, queued and running at a provider, finished but not
yet delivered —; the worker, which never opens the gateway nor publishes commands, finishes and delivers each once,
submits none again and charges none twice; then a new bot comes up and posts nothing again.

What is counted is what members and providers see: the result posts in each job's channel at the fake Discord,
the jobs each provider fake was given, and /quota. Nothing here reads the database, so these tests run on any store
the `database_url` fixture names.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest

from tests.conftest import png_bytes
from tests.e2e.conftest import Fleet
from tests.e2e.harness import ProviderFakes, started_job
from tests.fakes.discord import Channel, FakeDiscord, MemberActor, Message

pytestmark = pytest.mark.asyncio(loop_scope="session")

PHOTO = png_bytes(180, 150, (70, 120, 60))
NOVITA_POLL = "/v3/async/task-result"
FAL_STATUS = "/status"
GLAM_RESULT = "/result/"
MESSAGES = "/channels/{channel_id}/messages"
COMMAND_ROUTES = ("/applications/{application_id}/commands",
                  "/applications/{application_id}/guilds/{guild_id}/commands")
RESULT_BUTTON = re.compile(r"^atelier:v2:(retry|vary|delete):")


def results_in(discord: FakeDiscord, channel: Channel) -> list[Message]:
    """The public posts in the channel that deliver a job (a result or a failure carries Retry/Delete buttons;
    a status message carries Cancel, and none once finished)."""
    return [m for m in channel.live() if not m.ephemeral and m.author.id == discord.bot.id
            and any(RESULT_BUTTON.match(b.get("custom_id", "")) for b in m.buttons())]


async def start(member: MemberActor, channel: Channel, command: str, **options: Any) -> int:
    run = await member.run_command(channel, command, **options)
    return started_job((await run.reply()).content)


async def provider_jobs(providers: ProviderFakes) -> dict[str, dict[str, Any]]:
    """Every job each provider fake was given, by its remote id: a submit made twice would show as two."""
    return {name: (await providers.stats(name))["jobs"] for name in ("novita", "fal", "glam")}


async def until(check: Any, *, what: str, timeout: float = 20.0) -> Any:
    """Poll an async look at the fakes' state until it is truthy (AssertionError after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.05)


async def new_polled_job(providers: ProviderFakes, name: str, known: dict[str, Any]) -> str:
    """The remote id of a job new at this provider since `known` that has been polled at least once."""
    async def look() -> str | None:
        jobs = (await providers.stats(name))["jobs"]
        return next((rid for rid, job in jobs.items() if rid not in known and job["polls"] >= 1), None)
    found: str = await until(look, what=f"a new job at {name}, polled")
    return found


def command_syncs(discord: FakeDiscord) -> int:
    return sum(len(discord.calls("PUT", route)) for route in COMMAND_ROUTES)


async def test_a_worker_finishes_and_delivers_once_what_a_killed_bot_left(fleet: Fleet) -> None:
    discord, providers = fleet.discord, fleet.providers
    await fleet.bot.start()
    syncs, gateway = command_syncs(discord), (discord.gateway.stats.connections, discord.gateway.stats.identifies)
    worker = fleet.worker()
    await worker.start()
    # The worker logged in over REST only: no gateway connection, and the bot's commands left as they were.
    assert command_syncs(discord) == syncs and syncs > 0
    assert (discord.gateway.stats.connections, discord.gateway.stats.identifies) == gateway

    names = ("finished", "queued", "running", "glam-1", "glam-2", "waiting")
    members = {n: await fleet.member(n) for n in names}
    channels = {n: await fleet.guild.create_channel(f"job-{n}") for n in names}
    before = await provider_jobs(providers)

    # Finished but undelivered: its result post meets a 429 with a minute to wait, and the bot is killed meanwhile.
    await providers.hold("novita", NOVITA_POLL)
    await start(members["finished"], channels["finished"], "imagine", prompt="finished, not delivered")
    discord.rate_limit_next(1, route=MESSAGES, retry_after=60)
    await providers.release("novita")
    await discord.wait_for(lambda: any(c.status == 429 for c in discord.calls("POST", MESSAGES)),
                           what="the result post to be rate-limited")

    # Queued at Novita: three polls would say "queued"; after the first, polls hang.
    await providers.script("novita", queue_polls=3, running_polls=1)
    known = (await provider_jobs(providers))["novita"]
    await start(members["queued"], channels["queued"], "imagine", prompt="queued")
    await new_polled_job(providers, "novita", known)
    await providers.hold("novita", NOVITA_POLL)

    # Running at fal: the first poll already says "running"; after it, polls hang.
    await providers.script("fal", queue_polls=0, running_polls=3)
    known = (await provider_jobs(providers))["fal"]
    await start(members["running"], channels["running"], "edit", image=("room.png", PHOTO), prompt="running")
    await new_polled_job(providers, "fal", known)
    await providers.hold("fal", FAL_STATUS)

    # Waiting for a slot: Glam runs two jobs at once; both hang at the provider, the third waits in line.
    await providers.hold("glam", GLAM_RESULT)
    for name in ("glam-1", "glam-2"):
        await start(members[name], channels[name], "filter", image=("me.png", PHOTO), name="real_sunset")
    await until(lambda: _count_at(providers, "glam", len(before["glam"]) + 2), what="two filter jobs at Glam")
    await start(members["waiting"], channels["waiting"], "filter", image=("me.png", PHOTO), name="real_sunset")
    assert len((await provider_jobs(providers))["glam"]) == len(before["glam"]) + 2  # the third was not sent
    assert all(results_in(discord, c) == [] for c in channels.values())

    await fleet.bot.kill()
    for name in ("novita", "fal", "glam"):
        await providers.release(name)
    await providers.script("novita", queue_polls=1, running_polls=1)
    await providers.script("fal", queue_polls=1, running_polls=1)

    # The worker alone finishes and delivers all six.
    for name, channel in channels.items():
        await discord.wait_for(lambda c=channel: results_in(discord, c), timeout=60, what=f"the {name} job's result")
    after = await provider_jobs(providers)
    assert {p: len(after[p]) - len(before[p]) for p in after} == {"novita": 2, "fal": 1, "glam": 3}

    # A new bot comes up beside the worker; a job it runs end to end gives both processes time to post again.
    await fleet.bot.start()
    fresh = await fleet.member("fresh")
    fresh_channel = await fleet.guild.create_channel("job-fresh")
    await start(fresh, fresh_channel, "imagine", prompt="after the restart")
    await discord.wait_for(lambda: results_in(discord, fresh_channel), timeout=30, what="the new job's result")

    for name, channel in channels.items():
        delivered = results_in(discord, channel)
        assert len(delivered) == 1, f"the {name} job was delivered {len(delivered)}×"
        assert delivered[0].attachments, f"the {name} job's result has no image"
        assert members[name].mention in delivered[0].content
    assert len(results_in(discord, fresh_channel)) == 1
    # No job was submitted again: only the new one reached a provider since.
    final = await provider_jobs(providers)
    assert {p: len(final[p]) - len(after[p]) for p in final} == {"novita": 1, "fal": 0, "glam": 0}
    # Each member was charged once for their one image.
    for name, member in members.items():
        run = await member.run_command(channels[name], "quota")
        assert "You have used **1** of **25** images today" in (await run.reply()).content, name

    # SIGTERM stops a worker as it stops the bot: in order, exit code 0.
    await worker.stop()
    assert worker.returncode == 0, worker.log_tail()


async def _count_at(providers: ProviderFakes, name: str, count: int) -> bool:
    return len((await providers.stats(name))["jobs"]) >= count


async def running_at_fal(fleet: Fleet, member: MemberActor, channel: Channel) -> None:
    """Start an edit that fal reports running at its first poll; polls hang after that."""
    await fleet.providers.script("fal", queue_polls=0, running_polls=3)
    known = (await provider_jobs(fleet.providers))["fal"]
    await start(member, channel, "edit", image=("room.png", PHOTO), prompt="running")
    await new_polled_job(fleet.providers, "fal", known)
    await fleet.providers.hold("fal", FAL_STATUS)


async def test_sigterm_stops_a_worker_mid_job_and_the_next_one_finishes_it(fleet: Fleet) -> None:
    discord, providers = fleet.discord, fleet.providers
    await fleet.bot.start()
    first = fleet.worker()
    await first.start()
    member, channel = await fleet.member("carol"), await fleet.guild.create_channel("job-handed-on")
    before = await provider_jobs(providers)
    await running_at_fal(fleet, member, channel)

    await fleet.bot.kill()
    polls = len(await providers.request_log("fal", path_contains=FAL_STATUS))
    # The worker took the job over: its poll arrives (and hangs, held).
    await until(lambda: _more_polls(providers, polls), what="the worker to poll the job at fal")

    started = time.monotonic()
    await first.stop()
    assert first.returncode == 0, first.log_tail()
    assert time.monotonic() - started < 15  # in order, not by the harness's SIGKILL after 15 s

    await providers.script("fal", queue_polls=1, running_polls=1)
    await providers.release("fal")
    second = fleet.worker()
    await second.start()
    await discord.wait_for(lambda: results_in(discord, channel), timeout=40, what="the job's result")
    assert len(results_in(discord, channel)) == 1
    after = await provider_jobs(providers)
    assert len(after["fal"]) - len(before["fal"]) == 1  # followed by its stored handle, never sent again


async def _more_polls(providers: ProviderFakes, than: int) -> bool:
    return len(await providers.request_log("fal", path_contains=FAL_STATUS)) > than


async def test_a_frozen_bots_job_goes_to_the_worker_and_the_thawed_bot_posts_nothing_again(fleet: Fleet) -> None:
    discord = fleet.discord
    fleet.processes.env["LEASE_SECONDS"] = "3"  # a frozen process's leases lapse after 3 s
    await fleet.bot.start()
    worker = fleet.worker()
    await worker.start()
    member, channel = await fleet.member("frozen"), await fleet.guild.create_channel("job-frozen-bot")
    before = await provider_jobs(fleet.providers)
    await running_at_fal(fleet, member, channel)

    fleet.bot.pause()
    await fleet.providers.script("fal", queue_polls=1, running_polls=1)
    await fleet.providers.release("fal")
    await discord.wait_for(lambda: results_in(discord, channel), timeout=40, what="the worker's delivery")

    fleet.bot.resume()
    # The thawed bot carries on from where it froze (a poll of a job that has ended since). A job it runs end to end
    # afterwards gives it time to post the old one again, if it were going to.
    other = await fleet.member("after-thaw")
    other_channel = await fleet.guild.create_channel("job-after-thaw")
    await start(other, other_channel, "imagine", prompt="after the thaw")
    await discord.wait_for(lambda: results_in(discord, other_channel), timeout=40, what="the new job's result")
    assert len(results_in(discord, channel)) == 1
    after = await provider_jobs(fleet.providers)
    assert len(after["fal"]) - len(before["fal"]) == 1
    run = await member.run_command(channel, "quota")
    assert "You have used **1** of **25** images today" in (await run.reply()).content


async def test_a_worker_without_a_token_says_so_in_one_line_and_exits_2(fleet: Fleet) -> None:
    env = {k: v for k, v in fleet.processes.env.items() if k != "DISCORD_TOKEN"}
    worker = fleet.worker(env=env)
    await worker.start(wait_ready=False)
    assert await worker.wait_exit() == 2
    lines = [line for line in worker.log_since(0).splitlines() if line.strip() and not line.startswith("-----")]
    assert lines == ["atelier: DISCORD_TOKEN is not set: put the bot token from the Discord developer portal in .env "
                     "(see .env.example)."]
    assert fleet.discord.rest.calls == []  # it never reached Discord


async def test_a_worker_whose_token_discord_rejects_says_so_in_one_line_and_exits_2(fleet: Fleet) -> None:
    env = {**fleet.processes.env, "DISCORD_TOKEN": "fake.not-this-bots-token"}
    worker = fleet.worker(env=env)
    await worker.start(wait_ready=False)
    assert await worker.wait_exit() == 2
    text = worker.log_since(0)
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("-----")]
    assert lines == ["atelier: Discord rejected DISCORD_TOKEN (401 Unauthorized): copy the bot token again from the "
                     "developer portal."]
    assert "not-this-bots-token" not in text
