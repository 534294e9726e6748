"""The fake Discord as tests drive it: one aiohttp server (REST, gateway, CDN) living in the test's event loop, a
world to build (guilds, channels, members), knobs for Discord's limits and faults, and waits on state changes.
Members act and look through members.py.

    fake = FakeDiscord()
    await fake.start()                      # then run the bot with fake.bot_env()
    guild = await fake.create_guild("Atelier e2e")  # shard=k: on shard k of fake.shard_count (gateway.py)
    channel = await guild.create_channel("studio")
    alice = await guild.add_member("alice")
    run = await alice.run_command(channel, "imagine", prompt="a red fox")
    reply = await run.reply()               # the private answer, once the bot has written it
    result = await fake.wait_for(lambda: alice.find(channel, "job #1"), timeout=20)
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from aiohttp import web

from tests.fakes.discord.cdn import Cdn
from tests.fakes.discord.endpoints import Endpoints
from tests.fakes.discord.gateway import Gateway, shard_of
from tests.fakes.discord.members import MemberActor
from tests.fakes.discord.models import (
    DM,
    EVERYONE_DEFAULT,
    Channel,
    Guild,
    GuildMember,
    Intent,
    Interaction,
    Message,
    Overwrite,
    Reaction,
    Role,
    User,
    snowflake,
)
from tests.fakes.discord.rest import Fault, Hold, Rest, RestCall
from tests.fakes.discord.threads import LoopThread, on_fake_loop

T = TypeVar("T")
BOT_PERMISSIONS = 116_800  # what Atelier's invite link asks for (README)


class FakeDiscord:
    def __init__(self, *, token: str | None = None, bot_name: str = "Atelier") -> None:
        self.token = token or f"fake.{secrets.token_urlsafe(24)}"
        self.owner = User(snowflake(), "app-owner")
        self.bot = User(snowflake(), bot_name, bot=True)
        self.application_id = self.bot.id  # as for any bot made since 2020
        self.users: dict[int, User] = {self.bot.id: self.bot, self.owner.id: self.owner}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.dm_channels: dict[int, Channel] = {}
        self.messages: dict[int, Message] = {}
        self.interactions: dict[int, Interaction] = {}
        self.by_token: dict[str, Interaction] = {}
        self.commands: dict[int | None, list[dict[str, Any]]] = {}  # guild id (None: global) -> synced commands
        # Discord's rules, as knobs a test may turn.
        self.ack_deadline_s = 3.0
        self.token_ttl_s = 900.0
        self.nonce_window_s = 300.0
        self.nonce_hits = 0  # posts answered with the message already posted under their nonce
        # The gateway's shards (gateway.py), set before the bot connects: how many shards /gateway/bot recommends
        # and events are routed over, how many IDENTIFY buckets run at once, and one IDENTIFY per bucket how often.
        self.shard_count = 1
        self.max_concurrency = 1
        self.identify_interval_s = 5.0
        self.cdn = Cdn()
        self.rest = Rest(self)
        self.endpoints = Endpoints(self)
        self.gateway = Gateway(self)
        self.base_url = ""
        self.thread = LoopThread("fake-discord")
        self._runner: web.AppRunner | None = None
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._waiters_lock = threading.Lock()

    # --- lifecycle -----------------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Serve on 127.0.0.1 from the fake's own thread (see threads.py)."""
        self.thread.start()
        await self.thread.run(self._serve(host, port))

    async def _serve(self, host: str, port: int) -> None:
        app = web.Application(middlewares=[self.rest.middleware], client_max_size=256 * 1024 * 1024)
        self.rest.add_routes(app.router, self.endpoints.routes())
        self.gateway.add_routes(app.router)
        self.cdn.add_routes(app.router)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.base_url = f"http://{host}:{self._runner.addresses[0][1]}"
        self.cdn.base_url = self.base_url

    async def stop(self) -> None:
        if self.thread.loop is not None:
            await self.thread.run(self._shutdown())
        await self.thread.stop()

    async def _shutdown(self) -> None:
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"{self.base_url.replace('http://', 'ws://')}/gateway"

    def bot_env(self) -> dict[str, str]:
        """The settings that aim the bot at this fake (bot/discord_bot.py `point_at`)."""
        return {"DISCORD_TOKEN": self.token, "DISCORD_API_BASE": self.api_base,
                "DISCORD_GATEWAY_URL": self.gateway_url}

    # --- waiting on state ----------------------------------------------------------------------------------

    def changed(self) -> None:
        """Wake every waiter, in whatever loop it waits: something the bot or a test did changed the world."""
        with self._waiters_lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed meanwhile
                loop.call_soon_threadsafe(event.set)

    async def wait_for(self, predicate: Callable[[], T], *, timeout: float = 10.0, what: str | None = None,
                       poll: float | None = None) -> T:
        """Return predicate()'s first truthy value, re-checked on every change (and every `poll` seconds, for
        conditions on things outside this fake, such as the bot's database)."""
        loop = asyncio.get_running_loop()
        waiter = (loop, asyncio.Event())
        with self._waiters_lock:
            self._waiters.add(waiter)
        try:
            deadline = loop.time() + timeout
            while True:
                waiter[1].clear()  # before looking: a change while we look wakes the next wait at once
                result = predicate()
                if result:
                    return result
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise AssertionError(f"gave up after {timeout:g} s waiting for {what or 'the condition'}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter[1].wait(), timeout=min(remaining, poll) if poll else remaining)
        finally:
            with self._waiters_lock:
                self._waiters.discard(waiter)

    async def wait_connected(self, *, timeout: float = 30.0) -> None:
        await self.wait_for(lambda: self.gateway.connected and self.gateway.session is not None, timeout=timeout,
                            what="the bot's gateway session")

    async def wait_shards(self, shard_ids: Iterable[int], *, timeout: float = 30.0) -> None:
        """Wait until each of these shards has a live session (of the fake's shard count)."""
        wanted = set(shard_ids)
        await self.wait_for(lambda: wanted <= self.gateway.connected_shards, timeout=timeout,
                            what=f"gateway sessions on shards {sorted(wanted)}")

    def shard_of(self, guild_id: int) -> int:
        """The shard a guild's events go to, (guild_id >> 22) % shard_count."""
        return shard_of(guild_id, self.shard_count)

    # --- world building --------------------------------------------------------------------------------------

    @on_fake_loop
    async def create_guild(self, name: str = "Atelier e2e", *, premium_tier: int = 0,
                           bot_permissions: int = BOT_PERMISSIONS, shard: int | None = None) -> GuildHandle:
        """A guild the bot is in, announced to its shard; `shard` chooses that shard (else wherever its id falls)."""
        guild = Guild(id=self._guild_id(shard), name=name, owner_id=self.owner.id, premium_tier=premium_tier)
        guild.roles[guild.id] = Role(guild.id, "@everyone", int(EVERYONE_DEFAULT))
        bot_role = Role(snowflake(), self.bot.username, bot_permissions, position=1, managed=True,
                        bot_id=self.bot.id)
        guild.roles[bot_role.id] = bot_role
        guild.members[self.bot.id] = GuildMember(self.bot, guild, roles=[bot_role.id])
        guild.members[self.owner.id] = GuildMember(self.owner, guild)
        self.guilds[guild.id] = guild
        await self.gateway.dispatch("GUILD_CREATE", guild.to_json(self.bot), Intent.GUILDS)
        self.changed()
        return GuildHandle(self, guild)

    def _guild_id(self, shard: int | None) -> int:
        if shard is None:
            return snowflake()
        if not 0 <= shard < self.shard_count:
            raise ValueError(f"shard {shard} is not one of the fake's {self.shard_count}")
        while True:
            # Move the id's timestamp back to the nearest millisecond that falls on the shard: still an id from
            # the past, with the low bits (the counter) of a fresh one.
            fresh = snowflake()
            stamp = fresh >> 22
            guild_id = ((stamp - (stamp - shard) % self.shard_count) << 22) | (fresh & ((1 << 22) - 1))
            if guild_id not in self.guilds:
                return guild_id

    def dm_channel(self, user: User) -> Channel:
        channel = self.dm_channels.get(user.id)
        if channel is None:
            channel = Channel(id=snowflake(), name="", guild=None, bot_id=self.bot.id, type=DM, recipient=user,
                              users=self.users)
            self.dm_channels[user.id] = channel
            self.channels[channel.id] = channel
        return channel

    def add_message(self, message: Message) -> None:
        self.messages[message.id] = message
        message.channel.messages[message.id] = message

    def bot_can(self, channel: Channel, permissions: int) -> bool:
        if channel.guild is None:
            return True
        member = channel.guild.members[self.bot.id]
        return channel.guild.permissions_of(member, channel) & permissions == permissions

    @on_fake_loop
    async def reaction_added(self, message: Message, user: User, emoji: str) -> None:
        reaction = next((r for r in message.reactions if r.emoji == emoji), None)
        if reaction is None:
            reaction = Reaction(emoji)
            message.reactions.append(reaction)
        if user.id in reaction.users:
            return  # Discord counts one reaction per user and emoji, and says nothing the second time
        reaction.users.append(user.id)
        data = self._reaction_event(message, user, emoji)
        data.update(burst=False, burst_colors=[], type=0, message_author_id=str(message.author.id))
        await self.gateway.dispatch("MESSAGE_REACTION_ADD", data, self._reaction_intent(message))
        self.changed()

    @on_fake_loop
    async def reaction_removed(self, message: Message, user: User, emoji: str) -> None:
        reaction = next((r for r in message.reactions if r.emoji == emoji), None)
        if reaction is None or user.id not in reaction.users:
            return
        reaction.users.remove(user.id)
        data = self._reaction_event(message, user, emoji)
        data.update(burst=False, type=0)
        data.pop("member", None)
        await self.gateway.dispatch("MESSAGE_REACTION_REMOVE", data, self._reaction_intent(message))
        self.changed()

    def _reaction_event(self, message: Message, user: User, emoji: str) -> dict[str, Any]:
        channel = message.channel
        data: dict[str, Any] = {"user_id": str(user.id), "channel_id": str(channel.id),
                                "message_id": str(message.id), "emoji": {"id": None, "name": emoji}}
        if channel.guild is not None:
            data["guild_id"] = str(channel.guild.id)
            data["member"] = channel.guild.members[user.id].to_json()
        return data

    @staticmethod
    def _reaction_intent(message: Message) -> Intent:
        return Intent.DIRECT_MESSAGE_REACTIONS if message.channel.type == DM else Intent.GUILD_MESSAGE_REACTIONS

    @on_fake_loop
    async def post_as_bot(self, channel: Channel, content: str, *, custom_ids: Sequence[str] = ()) -> Message:
        """A message in the bot's name that the running bot process did not post: what an earlier installation of
        it (another database) or the version before this one left in the channel, with buttons of these ids."""
        buttons = [{"type": 2, "style": 2, "label": custom_id.split(":")[-2].title(), "custom_id": custom_id}
                   for custom_id in custom_ids]
        message = Message(id=snowflake(), channel=channel, author=self.bot, content=content,
                          components=[{"type": 1, "components": buttons}] if buttons else [])
        message.versions.append(content)
        self.add_message(message)
        self.changed()
        return message

    @on_fake_loop
    async def restyle_buttons(self, message: Message, custom_id: Callable[[str], str]) -> None:
        """Give a posted message's buttons other custom_ids, as an older version of the bot would have posted it."""
        for button in message.buttons():
            button["custom_id"] = custom_id(button["custom_id"])
        self.changed()

    # --- faults ----------------------------------------------------------------------------------------------

    def fail_next(self, status: int, code: int, message: str, *, times: int = 1, method: str | None = None,
                  route: str | None = None, after: bool = False) -> None:
        """The next `times` calls matching method and route template get this error instead; with after=True
        the call takes effect first (a message is posted) and only the answer is lost."""
        self.rest.faults.append(Fault(status, {"message": message, "code": code}, times, method, route,
                                      after=after))

    def rate_limit_next(self, times: int = 1, *, method: str | None = "POST",
                        route: str | None = "/channels/{channel_id}/messages", retry_after: float = 0.3) -> None:
        """The next `times` matching calls get a 429 as Discord sends it for a per-route (not global) limit."""
        reset = time.time() + retry_after
        headers = {"Retry-After": str(max(1, round(retry_after))), "X-RateLimit-Limit": "5",
                   "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": f"{reset:.3f}",
                   "X-RateLimit-Reset-After": f"{retry_after:.3f}", "X-RateLimit-Bucket": secrets.token_hex(16),
                   "X-RateLimit-Scope": "user"}
        body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
        self.rest.faults.append(Fault(429, body, times, method, route, headers))

    def hold_next(self, method: str | None = None, route: str | None = None, *, path: str | None = None) -> Hold:
        """Keep the next matching call waiting at Discord until `hold.release()`; `hold.reached` is set when it
        arrives. Released, it takes effect even if the bot has died meanwhile (as a request Discord received)."""
        hold = Hold(method, route, path, thread=self.thread)
        self.rest.holds.append(hold)
        return hold

    @on_fake_loop
    async def drop_gateway(self, *, shard: int | None = None) -> None:
        """Close the bot's gateway connection (of one shard, or all); it comes back by RESUME (refused: op 9) and
        a new IDENTIFY."""
        await self.gateway.drop(shard=shard)
        self.changed()

    # --- observation -----------------------------------------------------------------------------------------

    def calls(self, method: str | None = None, route: str | None = None, *, path: str | None = None,
              since: float = 0.0) -> list[RestCall]:
        """The bot's REST calls, optionally of one method, route template (or exact path without /api/v10), made
        after `since` (monotonic)."""
        return [c for c in self.rest.calls if (method is None or c.method == method)
                and (route is None or c.route == route) and (path is None or c.path == path) and c.at >= since]


class GuildHandle:
    def __init__(self, fake: FakeDiscord, guild: Guild) -> None:
        self.fake = fake
        self.guild = guild

    @property
    def id(self) -> int:
        return self.guild.id

    @on_fake_loop
    async def create_channel(self, name: str, *, nsfw: bool = False) -> Channel:
        channel = Channel(id=snowflake(), name=name, guild=self.guild, bot_id=self.fake.bot.id, nsfw=nsfw,
                          position=len(self.guild.channels), users=self.fake.users)
        self.guild.channels[channel.id] = channel
        self.fake.channels[channel.id] = channel
        await self.fake.gateway.dispatch("CHANNEL_CREATE", channel.to_json(), Intent.GUILDS)
        self.fake.changed()
        return channel

    @on_fake_loop
    async def create_role(self, name: str, permissions: int = 0) -> Role:
        role = Role(snowflake(), name, permissions, position=len(self.guild.roles))
        self.guild.roles[role.id] = role
        await self.fake.gateway.dispatch("GUILD_ROLE_CREATE", {"guild_id": str(self.id), "role": role.to_json()},
                                         Intent.GUILDS)
        return role

    @on_fake_loop
    async def add_member(self, name: str, *, roles: Sequence[Role] = ()) -> MemberActor:
        user = User(snowflake(), name)
        self.fake.users[user.id] = user
        member = GuildMember(user, self.guild, roles=[r.id for r in roles])
        self.guild.members[user.id] = member
        # A privileged intent: Atelier does not ask for it, so it is told nothing.
        await self.fake.gateway.dispatch("GUILD_MEMBER_ADD", {**member.to_json(), "guild_id": str(self.id)},
                                         Intent.GUILD_MEMBERS)
        self.fake.changed()
        return MemberActor(self.fake, member)

    @on_fake_loop
    async def set_bot_permissions(self, channel: Channel, *, allow: int = 0, deny: int = 0) -> None:
        """A member overwrite for the bot in one channel (e.g. deny=Perm.ATTACH_FILES), as a moderator sets it."""
        bot_id = self.fake.bot.id
        channel.overwrites = [o for o in channel.overwrites if not (o.type == 1 and o.id == bot_id)]
        if allow or deny:
            channel.overwrites.append(Overwrite(bot_id, 1, int(allow), int(deny)))
        await self.fake.gateway.dispatch("CHANNEL_UPDATE", channel.to_json(), Intent.GUILDS)
        self.fake.changed()
