"""The Discord REST budget in the real processes: jobs started together stay under DISCORD_REST_PER_SECOND at the
fake Discord (which answers over its global limit with Discord's global 429), every result and every status
message's final text lands, and two processes on one PostgreSQL database each take half of the budget.

What is counted is what Discord sees: the fake's peak of bot-token requests in any one second, its global 429s,
and the messages in the channel (their every version, as a member watching saw them).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import BOT_SETTINGS
from tests.e2e.harness import PROVIDERS, Cluster, ProviderFakes, started_job
from tests.e2e.test_workers import results_in
from tests.fakes.discord import Channel, FakeDiscord, GuildHandle, Message
from tests.pg import fresh_database

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Jobs that stay a few seconds at the provider, so that their progress edits compete with the others' results.
SCRIPT = {"queue_polls": 4, "running_polls": 4}
DONE = "✅ done"
SHARE = "2 live processes, 3.0 requests/s for this one"


@dataclass
class World:
    discord: FakeDiscord
    guild: GuildHandle
    channel: Channel
    cluster: Cluster


@asynccontextmanager
async def world(root: Path, providers: ProviderFakes, database_url: str, *, per_second: int,
                global_per_second: int) -> AsyncIterator[World]:
    fake = FakeDiscord()
    await fake.start()
    fake.rest.global_per_second = global_per_second
    guild = await fake.create_guild("Atelier budget")
    channel = await guild.create_channel("budget")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(root), "PYTHONPATH": str(Path(__file__).parents[2]),
           "DATABASE_URL": database_url, "DISCORD_GUILD_IDS": str(guild.id), **fake.bot_env(), **providers.env(),
           **BOT_SETTINGS, "DISCORD_REST_PER_SECOND": str(per_second), "QUOTA_CONCURRENT": "20",
           **{f"{name.upper()}_MAX_PARALLEL": "20" for name in PROVIDERS}}
    for name in PROVIDERS:
        await providers.script(name, **SCRIPT)
        await providers.knobs(name, distinct_outputs=True, latency_s=0.0)
        await providers.clear_faults(name)
    cluster = Cluster(root / "processes", env)
    try:
        yield World(fake, guild, channel, cluster)
    finally:
        await cluster.stop()
        for name in PROVIDERS:
            await providers.script(name, queue_polls=1, running_polls=1)
        await fake.stop()


async def run_jobs(w: World, count: int) -> list[int]:
    """`count` members start an /imagine each, all at once."""
    members = [await w.guild.add_member(f"m{n}") for n in range(count)]

    async def start(n: int) -> int:
        run = await members[n].run_command(w.channel, "imagine", prompt=f"a fox, take {n}")
        return started_job((await run.reply(timeout=60)).content)

    return list(await asyncio.gather(*(start(n) for n in range(count))))


def status_messages(w: World) -> list[Message]:
    """The jobs' status messages: the bot's public posts with no result buttons."""
    results = {m.id for m in results_in(w.discord, w.channel)}
    return [m for m in w.channel.live() if not m.ephemeral and m.author.id == w.discord.bot.id
            and m.id not in results and "job #" in m.content]


async def every_result(w: World, count: int) -> None:
    await w.discord.wait_for(lambda: len(results_in(w.discord, w.channel)) >= count, timeout=90,
                             what=f"{count} results")
    # The final edit of each status message follows its result post.
    await w.discord.wait_for(lambda: sum(DONE in m.content for m in status_messages(w)) >= count, timeout=30,
                             what="every status message saying done")


def check_status_messages(w: World, count: int) -> None:
    statuses = status_messages(w)
    assert len(statuses) == count
    for message in statuses:
        assert DONE in message.content and not message.buttons()  # the final text, the Cancel button gone
        finals = [v for v in message.versions if DONE in v]
        assert finals == [message.versions[-1]], message.versions  # written once, and nothing after it
        repeats = [a for a, b in zip(message.versions, message.versions[1:], strict=False) if a == b]
        assert not repeats, message.versions  # no edit that changed nothing a member could see


async def test_jobs_started_together_stay_under_the_budget_and_all_land(tmp_path: Path,
                                                                        providers: ProviderFakes) -> None:
    async with world(tmp_path, providers, f"sqlite:///{tmp_path}/data/atelier.db", per_second=3,
                     global_per_second=3) as w:
        await w.cluster.bot.start()
        await run_jobs(w, 6)
        await every_result(w, 6)
        assert w.discord.rest.global_429s == 0
        assert w.discord.rest.peak_per_second <= 3
        check_status_messages(w, 6)
        # Six deliveries into one channel read the channel once, not six times; the guild's upload limit comes
        # from the gateway (a worker, with no gateway, reads it once too).
        assert len(w.discord.calls("GET", "/channels/{channel_id}")) == 1
        assert len(w.discord.calls("GET", "/guilds/{guild_id}")) == 0


async def test_two_processes_on_one_postgres_database_share_the_budget(tmp_path: Path,
                                                                       providers: ProviderFakes) -> None:
    with fresh_database() as url:
        async with world(tmp_path, providers, url, per_second=6, global_per_second=6) as w:
            bot = w.cluster.bot
            await bot.start()
            mark = bot.log_size()
            worker = w.cluster.worker()
            await worker.start()
            # Each counts the other within a few seconds, whether or not it is sending anything.
            await w.discord.wait_for(lambda: SHARE in bot.log_since(mark) and SHARE in worker.log_tail(200_000),
                                     timeout=15, poll=0.2, what="both processes counting two")
            await run_jobs(w, 10)
            await every_result(w, 10)
            # Each process took half: alone each would have sent up to 6 a second, 12 together.
            assert w.discord.rest.global_429s == 0
            assert w.discord.rest.peak_per_second <= 6
            check_status_messages(w, 10)
