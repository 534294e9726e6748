"""Four gateway shards served by two bot processes, with a worker, on one PostgreSQL database, each the real
process against a fake Discord that routes each guild's events to its shard and refuses an IDENTIFY that comes
before its bucket's turn.

The two bots claim the ranges {0,1} and {2,3} between them; a member's command in a guild on any shard is answered
and delivered; a reaction on a result is handled by whichever process serves that guild's shard; the slash
commands are published once for the whole fleet. A third bot started meanwhile stands by; when the bot serving
{2,3} is SIGKILLed the standby claims that range at once; SIGKILLed in turn, its range is claimed by a newly started
process, which publishes nothing again, and the guilds on those shards are served again.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import aiohttp
import psycopg
import pytest
from psycopg.rows import dict_row

from bot.command_sync import digest
from tests.e2e.conftest import Fleet
from tests.e2e.harness import BotProcess
from tests.e2e.test_workers import results_in
from tests.fakes.discord import Channel, MemberActor

pytestmark = pytest.mark.asyncio(loop_scope="session")

SHARDS = 4
GUILD_COMMANDS = "/applications/{application_id}/guilds/{guild_id}/commands"


def rows(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def claims_by_pid(url: str) -> dict[int, tuple[int, ...]]:
    return {int(r["pid"]): tuple(r["shard_ids"]) for r in rows(
        url, "SELECT p.pid, c.shard_ids FROM shard_claims c JOIN processes p ON p.id = c.process_id")}


async def ops(process: BotProcess, path: str) -> tuple[int, str]:
    """GET one of the process's operator endpoints (METRICS_PORT=0: its log says which port it bound)."""
    line = next(line for line in reversed(process.log_since(0).splitlines())
                if "metrics and health checks on http://127.0.0.1:" in line)
    port = int(line.split("http://127.0.0.1:")[1].split(" ")[0].rstrip("/"))
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{port}{path}", timeout=aiohttp.ClientTimeout(total=10)) as resp:
        return resp.status, await resp.text()


def shard_series(metrics: str) -> dict[str, float]:
    """atelier_discord_shard_connected by shard, from a /metrics page."""
    return {line.split('shard="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines() if line.startswith("atelier_discord_shard_connected{")}


async def delivered(fleet: Fleet, member: MemberActor, channel: Channel, prompt: str) -> None:
    """The member's /imagine is answered at once, and its result posted in the channel."""
    before = len(results_in(fleet.discord, channel))
    run = await member.run_command(channel, "imagine", prompt=prompt)
    assert await run.acked() < 3.0
    await start_answer(run)
    await fleet.discord.wait_for(lambda: len(results_in(fleet.discord, channel)) > before, timeout=30,
                                 what=f"the result of {prompt!r}")


async def start_answer(run: Any) -> None:
    reply = await run.reply()
    assert "Started job" in reply.content, reply.content


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_four_shards_on_two_bots_and_a_worker(fleet: Fleet, database_url: str) -> None:
    discord = fleet.discord
    discord.shard_count, discord.max_concurrency = SHARDS, 2
    guilds = [await discord.create_guild(f"shard {k}", shard=k) for k in range(SHARDS)]
    assert [discord.shard_of(g.id) for g in guilds] == list(range(SHARDS))
    fleet.processes.env.update({"DISCORD_SHARD_COUNT": str(SHARDS), "DISCORD_SHARDS_PER_PROCESS": "2",
                                "DISCORD_GUILD_IDS": ",".join(str(g.id) for g in guilds),
                                "METRICS_PORT": "0", "METRICS_HOST": "127.0.0.1"})
    bots = [fleet.bot, fleet.processes.another_bot()]
    for bot in bots:
        await bot.start(timeout=60)
    worker = fleet.worker()
    await worker.start()

    # Between them the two bots connect every shard once, each a range of its own; no IDENTIFY was refused, and
    # IDENTIFYs of one bucket (shard % 2) were at least 5 s apart although the bots started together.
    await discord.wait_for(lambda: discord.gateway.connected_shards == set(range(SHARDS)), timeout=30,
                           what="every shard connected")
    claims = claims_by_pid(database_url)
    assert sorted(claims.values()) == [(0, 1), (2, 3)] and set(claims) == {b.pid for b in bots}, claims
    assert discord.gateway.stats.identify_refused == 0
    # Each bot's metrics show the shards it serves, connected; each is ready.
    for bot in bots:
        status, page = await ops(bot, "/metrics")
        assert status == 200
        assert shard_series(page) == {str(k): 1.0 for k in claims[bot.pid]}  # type: ignore[index]
        assert (await ops(bot, "/readyz"))[0] == 200
    for bucket in (0, 1):
        times = sorted(r.at for r in discord.gateway.stats.identify_log if r.shard_id % 2 == bucket)
        assert all(b - a >= 5.0 for a, b in itertools.pairwise(times)), times
    # Published once for the fleet: one PUT per guild, though two bots started.
    puts = discord.calls("PUT", GUILD_COMMANDS)
    assert sorted(c.path.rsplit("/", 2)[-2] for c in puts) == sorted(str(g.id) for g in guilds)
    # What was recorded as published is what Discord was sent.
    recorded = {r["scope"]: r["digest"] for r in rows(database_url, "SELECT scope, digest FROM command_syncs")}
    for call in puts:
        guild_id = call.path.rsplit("/", 2)[-2]
        assert recorded[f"guild:{guild_id}"] == digest(discord.application_id, call.body)

    # A command in a guild on each shard: answered by the process serving that shard, delivered by any.
    channels = [await g.create_channel("art") for g in guilds]
    members = [await g.add_member(f"member-{k}") for k, g in enumerate(guilds)]
    for k in range(SHARDS):
        await delivered(fleet, members[k], channels[k], f"a fox on shard {k}")
    # A reaction on a result in a guild on the second bot's shards: a new job for the member.
    # Once its delivery is recorded (the bot pre-adds its reactions only while the REST budget has room, so they
    # are no sign of it; a member's own 🔄 works either way).
    first = results_in(discord, channels[3])[0]
    await discord.wait_for(lambda: rows(database_url, "SELECT 1 FROM discord_posts WHERE message_id = %s",
                                        (str(first.id),)), timeout=10, what="the result's post recorded")
    await members[3].react(first, "🔄")
    await discord.wait_for(lambda: len(results_in(discord, channels[3])) == 2, timeout=30,
                           what="the retried job's result")

    # A third bot finds both ranges served: it stands by (working jobs meanwhile) and connects no shard.
    standby = fleet.processes.another_bot()
    await standby.start(wait_ready=False)
    await discord.wait_for(lambda: "standing by" in standby.log_since(0), timeout=30, what="the third bot to stand by")
    assert discord.gateway.connected_shards == set(range(SHARDS))
    assert standby.pid not in claims_by_pid(database_url)
    await discord.wait_for(lambda: "metrics and health checks on" in standby.log_since(0), timeout=10,
                           what="the standby's operator endpoints")
    status, body = await ops(standby, "/readyz")
    assert status == 503 and "standing by" in body, body
    assert shard_series((await ops(standby, "/metrics"))[1]) == {}

    # SIGKILL the bot serving shards 2 and 3: the standby claims their range at once and connects them.
    dead = next(b for b in bots if claims[b.pid] == (2, 3))
    await dead.kill()
    await standby.wait_ready(timeout=30)
    await discord.wait_for(lambda: discord.gateway.connected_shards == set(range(SHARDS)), timeout=30,
                           what="shards 2 and 3 served again")
    assert claims_by_pid(database_url)[standby.pid] == (2, 3)  # type: ignore[index]
    assert (await ops(standby, "/readyz"))[0] == 200
    await delivered(fleet, members[2], channels[2], "a fox on shard 2, after the first kill")

    # SIGKILL that one too: with no standby left, the guilds on shards 2 and 3 go quiet until a newly started
    # process claims the range.
    await standby.kill()
    await discord.wait_for(lambda: discord.gateway.connected_shards == {0, 1}, timeout=10,
                           what="shards 2 and 3 gone with their process")
    replacement = fleet.processes.another_bot()
    began = time.monotonic()
    await replacement.start(timeout=60)
    await discord.wait_for(lambda: discord.gateway.connected_shards == set(range(SHARDS)), timeout=30,
                           what="shards 2 and 3 served again")
    assert claims_by_pid(database_url)[replacement.pid] == (2, 3)  # type: ignore[index]
    assert time.monotonic() - began < 30
    assert discord.gateway.stats.identify_refused == 0
    assert len(discord.calls("PUT", GUILD_COMMANDS)) == SHARDS  # nothing changed: nothing published again
    for k in (2, 3, 0):
        await delivered(fleet, members[k], channels[k], f"a fox on shard {k}, again")
    alive: list[BotProcess] = [b for b in fleet.processes.bots if b.alive]
    assert len(alive) == 2


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_on_sqlite_one_bot_connects_every_shard_in_turn(fleet: Fleet) -> None:
    """One process uses an SQLite store: it serves all the shards, IDENTIFYing them one bucket turn apart."""
    discord = fleet.discord
    discord.shard_count, discord.max_concurrency = 2, 1
    guilds = [await discord.create_guild(f"shard {k}", shard=k) for k in range(2)]
    fleet.processes.env.update({"DISCORD_SHARD_COUNT": "2", "DISCORD_GUILD_IDS": ",".join(str(g.id) for g in guilds)})
    await fleet.bot.start(timeout=60)
    assert discord.gateway.connected_shards == {0, 1}
    times = [r.at for r in discord.gateway.stats.identify_log]
    assert len(times) == 2 and times[1] - times[0] >= 5.0 and discord.gateway.stats.identify_refused == 0
    for k, guild in enumerate(guilds):
        await delivered(fleet, await guild.add_member(f"member-{k}"), await guild.create_channel("art"), f"fox {k}")
    # Restarted, it publishes nothing: the commands are as they were.
    puts = len(discord.calls("PUT", GUILD_COMMANDS))
    await fleet.bot.stop()
    await fleet.bot.start(timeout=60)
    assert len(discord.calls("PUT", GUILD_COMMANDS)) == puts == 2
