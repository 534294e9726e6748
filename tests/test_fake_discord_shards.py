"""The fake Discord's gateway runs shards as Discord does: /gateway/bot tells the shard count and the IDENTIFY
limits; each shard gets its own session with only its guilds; guild events reach only the shard of their guild and
guildless ones shard 0; IDENTIFYs too fast for their bucket are refused with op 9, and discord.py's
AutoShardedClient, pointed at the fake over real sockets, comes back from that by itself.

The clients run in this test's event loop with discord.py's two address knobs patched for the test only
(monkeypatch restores them), as bot.discord_bot.point_at sets them in the bot process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import aiohttp
import discord
import pytest
import yarl
from discord.gateway import DiscordWebSocket, KeepAliveHandler

from tests.fakes.discord import FakeDiscord
from tests.fakes.discord.gateway import INVALID_SESSION, UNKNOWN_ERROR

INTENTS = discord.Intents(guilds=True, guild_reactions=True, dm_reactions=True)
WAIT_S = 20.0  # for anything that happens over the sockets; generous, since two cores run the suite in parallel


class ShardedBot(discord.AutoShardedClient):
    """The gateway half of one bot process: the shards it runs, and what reached it over them."""

    def __init__(self, *, shard_ids: Sequence[int] | None, shard_count: int | None,
                 identify_pause_s: float | None) -> None:
        super().__init__(intents=INTENTS, shard_ids=list(shard_ids) if shard_ids is not None else None,
                         shard_count=shard_count, guild_ready_timeout=0.1, chunk_guilds_at_startup=False,
                         enable_debug_events=True)
        self.identify_pause_s = identify_pause_s  # None: discord.py's own (5 s before all but the first)
        self.guild_creates: list[int] = []
        self.interactions: list[discord.Interaction[Any]] = []
        self.reactions: list[discord.RawReactionActionEvent] = []
        self.connecting: asyncio.Task[None] | None = None
        self._news = asyncio.Event()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        if self.identify_pause_s is None:
            await super().before_identify_hook(shard_id, initial=initial)
        elif not initial:
            await asyncio.sleep(self.identify_pause_s)

    async def on_socket_raw_receive(self, msg: str) -> None:
        frame = json.loads(msg)
        if frame.get("t") == "GUILD_CREATE":
            self.guild_creates.append(int(frame["d"]["id"]))
            self._news.set()

    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        self.interactions.append(interaction)
        self._news.set()

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        self.reactions.append(payload)
        self._news.set()

    async def until(self, predicate: Callable[[], bool], what: str) -> None:
        """Wait until predicate() holds, re-checked whenever an event reaches this client."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        while True:
            self._news.clear()  # before looking: an event while we look wakes the next wait at once
            if predicate():
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"gave up waiting for {what}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._news.wait(), remaining)

    async def ready(self) -> None:
        await asyncio.wait_for(self.wait_until_ready(), WAIT_S)

    async def stop(self) -> None:
        await self.close()
        if self.connecting is not None:
            # A shard may be pausing before its next IDENTIFY, inside connect(): it would only be refused again.
            self.connecting.cancel()
            await asyncio.gather(self.connecting, return_exceptions=True)
        # A socket cancelled between HELLO and READY was never handed to its shard, so nothing stopped its
        # heartbeat thread; left running, it would beat against this test's closed loop in a later test.
        beating = [t for t in threading.enumerate()
                   if isinstance(t, KeepAliveHandler) and t.ws._connection is self._connection]
        for thread in beating:
            thread.stop()
            await asyncio.to_thread(thread.join, WAIT_S)
            assert not thread.is_alive(), thread.name


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord()
    await fake.start()
    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base)
    monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url))
    yield fake
    await fake.stop()


@pytest.fixture
async def bots(fake: FakeDiscord) -> AsyncIterator[Callable[..., ShardedBot]]:
    """Make clients (they log in and connect on `start(bot)`); all are closed after the test."""
    made: list[ShardedBot] = []

    def make(shard_ids: Sequence[int] | None = None, shard_count: int | None = None, *,
             identify_pause_s: float | None = 0.0) -> ShardedBot:
        bot = ShardedBot(shard_ids=shard_ids, shard_count=shard_count, identify_pause_s=identify_pause_s)
        made.append(bot)
        return bot

    yield make
    for bot in made:
        await bot.stop()


async def start(fake: FakeDiscord, *clients: ShardedBot) -> None:
    for bot in clients:
        await asyncio.wait_for(bot.login(fake.token), WAIT_S)
        bot.connecting = asyncio.create_task(bot.connect())


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT_S)) as session:
        yield session


async def raw_identify(http: aiohttp.ClientSession, fake: FakeDiscord,
                       shard: list[int] | None = None) -> aiohttp.ClientWebSocketResponse:
    """A gateway socket that has sent IDENTIFY (for `shard`, or none: [0, 1] by default)."""
    ws = await http.ws_connect(fake.gateway_url)
    hello = await ws.receive_json(timeout=WAIT_S)
    assert hello["op"] == 10
    identify: dict[str, Any] = {"token": fake.token, "intents": INTENTS.value, "properties": {}}
    if shard is not None:
        identify["shard"] = shard
    await ws.send_json({"op": 2, "d": identify})
    return ws


async def next_dispatch(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    frame: dict[str, Any] = await ws.receive_json(timeout=WAIT_S)
    return frame


# --- /gateway/bot ------------------------------------------------------------------------------------------


async def test_gateway_bot_tells_the_shard_count_and_the_identify_budget_left(
        fake: FakeDiscord, http: aiohttp.ClientSession, bots: Callable[..., ShardedBot]) -> None:
    fake.shard_count, fake.max_concurrency, fake.identify_interval_s = 3, 2, 0.0

    async def gateway_bot() -> Any:
        async with http.get(f"{fake.api_base}/gateway/bot", headers={"Authorization": f"Bot {fake.token}"}) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
            return await resp.json()

    assert await gateway_bot() == {"url": fake.gateway_url, "shards": 3, "session_start_limit": {
        "total": 1000, "remaining": 1000, "reset_after": 86_400_000, "max_concurrency": 2}}
    # A client given no shard count asks /gateway/bot and runs as many shards as it says.
    bot = bots()
    await start(fake, bot)
    await bot.ready()
    assert (bot.shard_count, sorted(bot.shards)) == (3, [0, 1, 2])
    assert fake.gateway.connected_shards == {0, 1, 2}
    limits = await bot.fetch_session_start_limits()
    assert (limits.total, limits.remaining, limits.max_concurrency) == (1000, 997, 2)
    assert (await gateway_bot())["session_start_limit"]["remaining"] == 997


# --- routing ---------------------------------------------------------------------------------------------


async def test_two_processes_of_two_shards_each_get_only_their_guilds_and_events(
        fake: FakeDiscord, bots: Callable[..., ShardedBot]) -> None:
    fake.shard_count, fake.identify_interval_s = 4, 0.0  # the IDENTIFY limit has tests of its own
    guilds = [await fake.create_guild(f"guild on shard {k}", shard=k) for k in range(4)]
    assert [fake.shard_of(g.id) for g in guilds] == [0, 1, 2, 3]
    studio = await guilds[2].create_channel("studio")
    alice = await guilds[2].add_member("alice")
    posted = await fake.post_as_bot(studio, "job #1 done", custom_ids=["atelier:retry:1"])
    first, second = bots([0, 1], 4), bots([2, 3], 4)
    await start(fake, first, second)
    await first.ready()
    await second.ready()

    assert fake.gateway.connected_shards == {0, 1, 2, 3}
    for k, guild in enumerate(guilds):
        session = fake.gateway.sessions[k]
        ready = session.sent[0]
        assert (ready["t"], ready["d"]["shard"], ready["d"]["guilds"]) == \
            ("READY", [k, 4], [{"id": str(guild.id), "unavailable": True}])
        assert [f["d"]["id"] for f in session.sent if f["t"] == "GUILD_CREATE"] == [str(guild.id)]
    assert sorted(first.guild_creates) == sorted([guilds[0].id, guilds[1].id])
    assert sorted(second.guild_creates) == sorted([guilds[2].id, guilds[3].id])
    assert {g.id for g in first.guilds} == {guilds[0].id, guilds[1].id}

    # A click and a reaction in the guild on shard 2 reach the second process only.
    run = await alice.click(posted, "Retry")
    assert run.delivered
    await second.until(lambda: len(second.interactions) == 1, "the click")
    assert second.interactions[0].guild_id == guilds[2].id
    await alice.react(posted, "🔄")
    await second.until(lambda: len(second.reactions) == 1, "the reaction in the guild")
    assert second.reactions[0].guild_id == guilds[2].id

    # A reaction in a DM has no guild: it goes to shard 0, in the first process.
    dm = await fake.post_as_bot(fake.dm_channel(alice.user), "your result")
    await alice.react(dm, "⭐")
    await first.until(lambda: len(first.reactions) == 1, "the DM reaction")
    assert (first.reactions[0].guild_id, first.reactions[0].message_id) == (None, dm.id)
    # Shard 0's socket carried the DM reaction after the click and the guild reaction would have, had they been
    # sent there; the fake's counts say no other shard got them either.
    assert first.interactions == [] and len(second.reactions) == 1
    delivered = {k: dict(fake.gateway.stats.shards[k].delivered) for k in range(4)}
    assert delivered == {0: {"MESSAGE_REACTION_ADD": 1}, 1: {},
                         2: {"INTERACTION_CREATE": 1, "MESSAGE_REACTION_ADD": 1}, 3: {}}


async def test_a_guild_made_while_connected_is_announced_on_its_own_shard(
        fake: FakeDiscord, bots: Callable[..., ShardedBot]) -> None:
    fake.shard_count, fake.identify_interval_s = 2, 0.0
    bot = bots([0, 1], 2)
    await start(fake, bot)
    await bot.ready()
    guild = await fake.create_guild("late", shard=1)
    await bot.until(lambda: guild.id in bot.guild_creates, "the new guild")
    assert fake.gateway.stats.shards[1].delivered["GUILD_CREATE"] == 1
    assert fake.gateway.stats.shards[0].delivered["GUILD_CREATE"] == 0
    assert bot.get_guild(guild.id) is not None


async def test_a_second_identify_for_a_shard_replaces_the_first_session(
        fake: FakeDiscord, http: aiohttp.ClientSession) -> None:
    fake.shard_count, fake.identify_interval_s = 2, 0.0
    guild = await fake.create_guild(shard=1)
    old = await raw_identify(http, fake, [1, 2])
    assert [(await next_dispatch(old))["t"] for _ in range(2)] == ["READY", "GUILD_CREATE"]
    first_session = fake.gateway.sessions[1]
    new = await raw_identify(http, fake, [1, 2])
    ready = await next_dispatch(new)
    assert ready["d"]["session_id"] != first_session.id
    closed = await old.receive(timeout=WAIT_S)
    assert (closed.type, closed.data) == (aiohttp.WSMsgType.CLOSE, UNKNOWN_ERROR)
    assert fake.gateway.sessions[1].id == ready["d"]["session_id"]
    assert fake.gateway.connected_shards == {1}
    assert (await next_dispatch(new))["d"]["id"] == str(guild.id)  # its GUILD_CREATE
    await new.close()


async def test_sessions_of_another_shard_count_run_side_by_side_but_get_no_events(
        fake: FakeDiscord, http: aiohttp.ClientSession) -> None:
    fake.shard_count, fake.identify_interval_s = 2, 0.0
    guild = await fake.create_guild(shard=0)
    current = await raw_identify(http, fake, [0, 2])
    resharding = await raw_identify(http, fake, [0, 1])  # the bot starting up with one shard fewer
    for ws, shard in ((current, [0, 2]), (resharding, [0, 1])):
        ready = await next_dispatch(ws)
        assert ready["d"]["shard"] == shard and [g["id"] for g in ready["d"]["guilds"]] == [str(guild.id)]
        assert (await next_dispatch(ws))["t"] == "GUILD_CREATE"
    assert [s.key for s in fake.gateway.all_sessions] == [(0, 2), (0, 1)]
    assert fake.gateway.sessions[0].key == (0, 2)
    channel = await guild.create_channel("studio")
    created = await next_dispatch(current)
    assert (created["t"], created["d"]["id"]) == ("CHANNEL_CREATE", str(channel.id))
    assert fake.gateway.all_sessions[1].seq == 2  # READY and GUILD_CREATE, nothing since
    await current.close()
    await resharding.close()


async def test_a_resume_picks_up_its_own_shards_session(fake: FakeDiscord, http: aiohttp.ClientSession) -> None:
    fake.shard_count, fake.identify_interval_s = 2, 0.0
    fake.gateway.accept_resume = True
    await fake.create_guild(shard=0)
    on_one = await fake.create_guild(shard=1)
    sockets = [await raw_identify(http, fake, [k, 2]) for k in (0, 1)]
    for ws in sockets:
        assert (await next_dispatch(ws))["t"] == "READY"
        assert (await next_dispatch(ws))["t"] == "GUILD_CREATE"
    one = fake.gateway.sessions[1]
    await fake.drop_gateway(shard=1)
    closed = await sockets[1].receive(timeout=WAIT_S)
    assert closed.type == aiohttp.WSMsgType.CLOSE
    assert fake.gateway.connected_shards == {0}
    channel = await on_one.create_channel("while away")  # kept for shard 1's session
    ws = await http.ws_connect(fake.gateway_url)
    assert (await ws.receive_json(timeout=WAIT_S))["op"] == 10
    await ws.send_json({"op": 6, "d": {"token": fake.token, "session_id": one.id, "seq": 2}})
    missed = await next_dispatch(ws)
    assert (missed["t"], missed["d"]["id"]) == ("CHANNEL_CREATE", str(channel.id))
    assert (await next_dispatch(ws))["t"] == "RESUMED"
    assert fake.gateway.sessions[1] is one and fake.gateway.connected_shards == {0, 1}
    assert fake.gateway.sessions[0].seq == 2 and not sockets[0].closed  # shard 0 untouched
    for open_ws in (ws, sockets[0]):
        await open_ws.close()


# --- IDENTIFY limits ---------------------------------------------------------------------------------------


async def test_an_identify_too_soon_for_its_bucket_is_refused_and_discord_py_identifies_again_later(
        fake: FakeDiscord, bots: Callable[..., ShardedBot]) -> None:
    """Two processes start at once, one shard each, in the one bucket max_concurrency=1 gives: the second IDENTIFY
    gets op 9; discord.py closes, waits its own 5 s (before_identify_hook) and identifies again, accepted then."""
    fake.shard_count, fake.max_concurrency, fake.identify_interval_s = 2, 1, 1.0
    first, second = bots([0], 2, identify_pause_s=None), bots([1], 2, identify_pause_s=None)
    fake.gateway.hold_connections()  # both sockets open, then both get HELLO at once
    await start(fake, first, second)
    await fake.wait_for(lambda: fake.gateway.stats.connections == 2, timeout=WAIT_S, what="both sockets")
    fake.gateway.release_connections()
    await fake.wait_for(lambda: fake.gateway.stats.identify_refused == 1, timeout=WAIT_S, what="a refusal")
    await fake.wait_shards([0, 1], timeout=WAIT_S)
    await first.ready()
    await second.ready()

    stats = fake.gateway.stats
    assert stats.identify_refused == 1 and stats.identifies == 2
    assert fake.gateway.connected_shards == {0, 1}
    (refused_shard,) = [k for k in (0, 1) if stats.shards[k].identify_refused]
    accepted_first = 1 - refused_shard
    refused = stats.shards[refused_shard]
    assert stats.shards[accepted_first].identified_at[0] <= refused.refused_at[0]
    gap = refused.identified_at[0] - stats.shards[accepted_first].identified_at[0]
    assert gap >= fake.identify_interval_s
    assert [(r.shard_id, r.shard_count) for r in stats.identify_log] == [(accepted_first, 2), (refused_shard, 2)]


async def test_with_max_concurrency_two_shards_zero_and_one_identify_together(
        fake: FakeDiscord, bots: Callable[..., ShardedBot]) -> None:
    """Buckets are shard_id % max_concurrency: shards 0 and 1 start side by side; shard 2 shares shard 0's bucket
    and waits its turn (its process pausing 0.25 s between attempts, not discord.py's 5 s, to keep this short)."""
    fake.shard_count, fake.max_concurrency, fake.identify_interval_s = 4, 2, 1.0
    clients = [bots([k], 4, identify_pause_s=0.25) for k in (0, 1, 2)]
    fake.gateway.hold_connections()
    await start(fake, *clients)
    await fake.wait_for(lambda: fake.gateway.stats.connections == 3, timeout=WAIT_S, what="three sockets")
    fake.gateway.release_connections()
    for bot in clients:
        await bot.ready()

    stats = fake.gateway.stats
    assert fake.gateway.connected_shards == {0, 1, 2}
    assert sorted(r.shard_id for r in stats.identify_log[:2]) == [0, 1] and stats.identify_log[2].shard_id == 2
    zero, one, two = (stats.shards[k].identified_at[0] for k in (0, 1, 2))
    assert abs(zero - one) < fake.identify_interval_s / 4
    assert (stats.shards[0].identify_refused, stats.shards[1].identify_refused) == (0, 0)
    assert stats.shards[2].identify_refused >= 1 and two - zero >= fake.identify_interval_s


async def test_a_refused_identify_is_answered_with_a_non_resumable_invalid_session(
        fake: FakeDiscord, http: aiohttp.ClientSession) -> None:
    fake.identify_interval_s = 30.0
    first = await raw_identify(http, fake)
    assert (await next_dispatch(first))["t"] == "READY"
    again = await raw_identify(http, fake, [0, 1])
    assert await again.receive_json(timeout=WAIT_S) == {"op": INVALID_SESSION, "d": False}
    assert fake.gateway.stats.shards[0].identify_refused == 1
    assert fake.gateway.connected and fake.gateway.session is not None and fake.gateway.session.ws is not None
    assert not first.closed  # the refused attempt takes nothing away from the session that has the shard
    await first.close()
    await again.close()


# --- invalid shards --------------------------------------------------------------------------------------


async def test_a_client_asking_for_a_shard_outside_the_count_is_closed_with_4010(
        fake: FakeDiscord, bots: Callable[..., ShardedBot]) -> None:
    fake.shard_count = 4
    bot = bots([4], 4)
    await start(fake, bot)
    assert bot.connecting is not None
    with pytest.raises(discord.ConnectionClosed) as closed:
        await asyncio.wait_for(bot.connecting, WAIT_S)
    assert closed.value.code == 4010
    assert fake.gateway.stats.identifies == 0 and fake.gateway.all_sessions == []


@pytest.mark.parametrize("shard", [[-1, 2], [2, 2], [0, 0], [0]])
async def test_an_identify_for_no_valid_shard_is_closed_with_4010(
        fake: FakeDiscord, http: aiohttp.ClientSession, shard: list[int]) -> None:
    ws = await raw_identify(http, fake, shard)
    closed = await ws.receive(timeout=WAIT_S)
    assert (closed.type, closed.data) == (aiohttp.WSMsgType.CLOSE, 4010)
