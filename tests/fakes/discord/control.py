"""The fake Discord as tests drive it: one aiohttp server (REST, gateway, CDN) living in the test's event loop, a
world to build (guilds, channels, members), members who act through the gateway (slash commands, button clicks,
reactions) and see what their client would show, knobs for Discord's limits and faults, and waits on state changes.

    fake = FakeDiscord()
    await fake.start()                      # then run the bot with fake.bot_env()
    guild = await fake.create_guild("Atelier e2e")
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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from tests.fakes.discord.cdn import Cdn
from tests.fakes.discord.gateway import Gateway
from tests.fakes.discord.models import (
    DM,
    EVERYONE_DEFAULT,
    Attachment,
    Channel,
    Guild,
    GuildMember,
    Intent,
    Interaction,
    Message,
    Overwrite,
    Perm,
    Reaction,
    Role,
    User,
    snowflake,
)
from tests.fakes.discord.rest import Fault, Hold, Rest, RestCall

T = TypeVar("T")
BOT_PERMISSIONS = 116_800  # what Atelier's invite link asks for (README)
MAX_OPTION_CHARS = 6000  # Discord's limit on a string option's value


@dataclass(frozen=True)
class Upload:
    """A file a member attaches to a command option."""

    filename: str
    data: bytes
    content_type: str | None = None


FileLike = bytes | tuple[str, bytes] | Upload | Attachment


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
        self.cdn = Cdn()
        self.rest = Rest(self)
        self.gateway = Gateway(self)
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()

    # --- lifecycle -----------------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application(middlewares=[self.rest.middleware], client_max_size=256 * 1024 * 1024)
        self.rest.add_routes(app.router)
        self.gateway.add_routes(app.router)
        self.cdn.add_routes(app.router)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.base_url = f"http://{host}:{self._runner.addresses[0][1]}"
        self.cdn.base_url = self.base_url

    async def stop(self) -> None:
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
        """Wake every waiter: something the bot or a test did changed the world."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], T], *, timeout: float = 10.0, what: str | None = None,
                       poll: float | None = None) -> T:
        """Return predicate()'s first truthy value, re-checked on every change (and every `poll` seconds, for
        conditions on things outside this fake, such as the bot's database)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"gave up after {timeout:g} s waiting for {what or 'the condition'}")
            event = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout=min(remaining, poll) if poll else remaining)

    async def wait_connected(self, *, timeout: float = 30.0) -> None:
        await self.wait_for(lambda: self.gateway.connected and self.gateway.session is not None, timeout=timeout,
                            what="the bot's gateway session")

    # --- world building --------------------------------------------------------------------------------------

    async def create_guild(self, name: str = "Atelier e2e", *, premium_tier: int = 0,
                           bot_permissions: int = BOT_PERMISSIONS) -> GuildHandle:
        guild = Guild(id=snowflake(), name=name, owner_id=self.owner.id, premium_tier=premium_tier)
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
        hold = Hold(method, route, path)
        self.rest.holds.append(hold)
        return hold

    async def drop_gateway(self) -> None:
        """Close the bot's gateway connection; it comes back by RESUME (refused: op 9) and a new IDENTIFY."""
        await self.gateway.drop()
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

    async def create_channel(self, name: str, *, nsfw: bool = False) -> Channel:
        channel = Channel(id=snowflake(), name=name, guild=self.guild, bot_id=self.fake.bot.id, nsfw=nsfw,
                          position=len(self.guild.channels), users=self.fake.users)
        self.guild.channels[channel.id] = channel
        self.fake.channels[channel.id] = channel
        await self.fake.gateway.dispatch("CHANNEL_CREATE", channel.to_json(), Intent.GUILDS)
        self.fake.changed()
        return channel

    async def create_role(self, name: str, permissions: int = 0) -> Role:
        role = Role(snowflake(), name, permissions, position=len(self.guild.roles))
        self.guild.roles[role.id] = role
        await self.fake.gateway.dispatch("GUILD_ROLE_CREATE", {"guild_id": str(self.id), "role": role.to_json()},
                                         Intent.GUILDS)
        return role

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

    async def set_bot_permissions(self, channel: Channel, *, allow: int = 0, deny: int = 0) -> None:
        """A member overwrite for the bot in one channel (e.g. deny=Perm.ATTACH_FILES), as a moderator sets it."""
        bot_id = self.fake.bot.id
        channel.overwrites = [o for o in channel.overwrites if not (o.type == 1 and o.id == bot_id)]
        if allow or deny:
            channel.overwrites.append(Overwrite(bot_id, 1, int(allow), int(deny)))
        await self.fake.gateway.dispatch("CHANNEL_UPDATE", channel.to_json(), Intent.GUILDS)
        self.fake.changed()


class InteractionRun:
    """One interaction a member started, as the member experiences it."""

    def __init__(self, fake: FakeDiscord, interaction: Interaction) -> None:
        self.fake = fake
        self.interaction = interaction

    @property
    def delivered(self) -> bool:
        return self.interaction.delivered

    @property
    def ack_latency(self) -> float | None:
        return self.interaction.ack_latency

    @property
    def response(self) -> Message | None:
        return self.interaction.original

    @property
    def followups(self) -> list[Message]:
        return list(self.interaction.followups)

    async def acked(self) -> float:
        """Wait for the acknowledgement; fail as the member would see it ("The application did not respond")."""
        remaining = self.fake.ack_deadline_s - (time.monotonic() - self.interaction.created)
        try:
            await self.fake.wait_for(lambda: self.interaction.acked_at is not None, timeout=max(0.0, remaining) + 0.5,
                                     what="the acknowledgement")
        except AssertionError:
            raise AssertionError(f"The application did not respond (rejected: {self.interaction.rejected})") \
                from None
        latency = self.interaction.ack_latency
        assert latency is not None
        return latency

    async def reply(self, timeout: float = 15.0) -> Message:
        """The answer the member reads: the response message once it is no longer "thinking…"."""
        await self.acked()

        def answered() -> Message | None:
            message = self.interaction.original
            return message if message is not None and not message.loading else None

        return await self.fake.wait_for(answered, timeout=timeout, what="the answer to the interaction")


class MemberActor:
    """A member acting through their client: commands, clicks and reactions, and what their client shows."""

    def __init__(self, fake: FakeDiscord, member: GuildMember) -> None:
        self.fake = fake
        self.member = member

    def __repr__(self) -> str:
        return f"<member {self.user.username} {self.id}>"

    @property
    def user(self) -> User:
        return self.member.user

    @property
    def id(self) -> int:
        return self.member.id

    @property
    def mention(self) -> str:
        return self.user.mention

    @property
    def guild(self) -> Guild:
        return self.member.guild

    # --- what the member sees --------------------------------------------------------------------------------

    def can_see(self, message: Message) -> bool:
        return not message.deleted and message.visible_to in (None, self.id)

    def sees(self, channel: Channel) -> list[Message]:
        """The channel as this member's client shows it: public messages and the private answers meant for them."""
        return [m for m in channel.messages.values() if self.can_see(m)]

    def find(self, channel: Channel, text: str, *, public: bool = True) -> Message | None:
        """The newest visible message containing `text` (public ones only unless public=False)."""
        for message in reversed(self.sees(channel)):
            if text in message.content and (not public or not message.ephemeral):
                return message
        return None

    def dms(self) -> list[Message]:
        channel = self.fake.dm_channels.get(self.id)
        return channel.live() if channel else []

    # --- acting ----------------------------------------------------------------------------------------------

    def _envelope(self, channel: Channel, kind: int, data: dict[str, Any]) -> Interaction:
        guild = self.guild
        if channel.guild is not guild:
            raise ValueError(f"{channel.name} is not in {guild.name}")
        bot_member = guild.members[self.fake.bot.id]
        interaction_id = snowflake()
        token = f"itok.{secrets.token_urlsafe(32)}"
        payload = {
            "id": str(interaction_id), "application_id": str(self.fake.application_id), "type": kind,
            "token": token, "version": 1, "guild_id": str(guild.id),
            "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
            "channel_id": str(channel.id), "channel": channel.to_json(),
            "member": self.member.to_json(channel=channel),
            "app_permissions": str(guild.permissions_of(bot_member, channel)), "locale": "en-US",
            "guild_locale": "en-US", "entitlements": [], "authorizing_integration_owners": {"0": str(guild.id)},
            "context": 0, "attachment_size_limit": guild.upload_limit, "data": data,
        }
        interaction = Interaction(id=interaction_id, token=token, type=kind, user=self.user, channel=channel,
                                  payload=payload)
        self.fake.interactions[interaction_id] = interaction
        self.fake.by_token[token] = interaction
        return interaction

    async def _send(self, interaction: Interaction) -> InteractionRun:
        interaction.created = time.monotonic()
        interaction.delivered = await self.fake.gateway.dispatch("INTERACTION_CREATE", interaction.payload)
        self.fake.changed()
        return InteractionRun(self.fake, interaction)

    async def run_command(self, channel: Channel, command: str, **options: Any) -> InteractionRun:
        """Run a slash command as this member would from the command picker: `"imagine"`, `"atelier usage"`.

        Options take plain values; attachment options take bytes (named `<option>.png`), (filename, bytes), an
        Upload or an existing Attachment; user/mentionable options a MemberActor; role options a Role. Whatever
        Discord's client would not let a member send (an unknown or missing option, a value outside its choices
        or range, a command hidden from them) raises instead.
        """
        name, *path = command.split()
        definition = self._command(name)
        required_bits = definition.get("default_member_permissions")
        if required_bits is not None:
            perms = self.guild.base_permissions(self.member)
            if perms & int(required_bits) != int(required_bits) and not perms & Perm.ADMINISTRATOR:
                raise PermissionError(f"/{name} is not offered to {self.user.username}")
        resolved: dict[str, dict[str, Any]] = {}
        levels = _subcommands(definition, path)
        innermost = levels[-1] if levels else definition
        values = self._options(command, channel, innermost.get("options", []), options, resolved)
        for level in reversed(levels):
            values = [{"name": level["name"], "type": level["type"], "options": values}]
        data: dict[str, Any] = {"id": definition["id"], "name": name, "type": 1, "options": values}
        if definition.get("guild_id"):
            data["guild_id"] = definition["guild_id"]
        if resolved:
            data["resolved"] = resolved
        return await self._send(self._envelope(channel, 2, data))

    def _command(self, name: str) -> dict[str, Any]:
        for scope in (self.guild.id, None):
            for command in self.fake.commands.get(scope, []):
                if command["name"] == name and command.get("type", 1) == 1:
                    return command
        raise LookupError(f"/{name} has not been synced to {self.guild.name} (or globally)")

    def _options(self, command: str, channel: Channel, definitions: list[dict[str, Any]], given: dict[str, Any],
                 resolved: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        by_name = {o["name"]: o for o in definitions}
        unknown = set(given) - set(by_name)
        if unknown:
            raise TypeError(f"/{command} has no option(s) {sorted(unknown)}; it has {sorted(by_name)}")
        missing = [o["name"] for o in definitions if o.get("required") and o["name"] not in given]
        if missing:
            raise TypeError(f"/{command} needs {missing}")
        values = []
        for option in definitions:
            if option["name"] not in given or given[option["name"]] is None:
                continue
            value = self._option_value(command, channel, option, given[option["name"]], resolved)
            values.append({"name": option["name"], "type": option["type"], "value": value})
        return values

    def _option_value(self, command: str, channel: Channel, option: dict[str, Any], value: Any,
                      resolved: dict[str, dict[str, Any]]) -> Any:
        kind, name = option["type"], option["name"]
        where = f"/{command} {name}"
        if kind == 11:  # attachment
            attachment = self._attach(channel, name, value)
            resolved.setdefault("attachments", {})[str(attachment.id)] = attachment.to_json()
            return str(attachment.id)
        if kind in (6, 9) and isinstance(value, MemberActor):  # user, mentionable
            resolved.setdefault("users", {})[str(value.id)] = value.user.to_json()
            resolved.setdefault("members", {})[str(value.id)] = value.member.to_json(with_user=False, channel=channel)
            return str(value.id)
        if kind in (8, 9) and isinstance(value, Role):
            resolved.setdefault("roles", {})[str(value.id)] = value.to_json()
            return str(value.id)
        if kind == 3:
            if not isinstance(value, str):
                raise TypeError(f"{where} takes text")
            low, high = option.get("min_length", 0), option.get("max_length", MAX_OPTION_CHARS)
            if not low <= len(value) <= high:
                raise ValueError(f"{where}: {len(value)} characters, Discord allows {low}-{high}")
        elif kind in (4, 10):
            if isinstance(value, bool) or not isinstance(value, int if kind == 4 else int | float):
                raise TypeError(f"{where} takes a number")
            low, high = option.get("min_value", -(2**53)), option.get("max_value", 2**53)
            if not low <= value <= high:
                raise ValueError(f"{where}: {value} is outside {low}..{high}")
        elif kind == 5:
            if not isinstance(value, bool):
                raise TypeError(f"{where} takes true or false")
        else:
            raise TypeError(f"{where}: cannot pass {value!r} for option type {kind}")
        choices = option.get("choices")
        if choices and value not in [c["value"] for c in choices]:
            raise ValueError(f"{where}: {value!r} is not one of {[c['value'] for c in choices]}")
        return value

    def _attach(self, channel: Channel, option: str, value: FileLike) -> Attachment:
        if isinstance(value, Attachment):
            return value
        if isinstance(value, bytes):
            value = Upload(f"{option}.png", value)
        elif isinstance(value, tuple):
            value = Upload(*value)
        return self.fake.cdn.store(channel.id, value.filename, value.data, content_type=value.content_type)

    async def click(self, message: Message, button: str) -> InteractionRun:
        """Click the button labelled `button` (or with that custom_id) on a message this member sees."""
        if not self.can_see(message):
            raise LookupError(f"{self.user.username} cannot see message {message.id}")
        found = next((b for b in message.buttons() if button in (b.get("label"), b.get("custom_id"))), None)
        if found is None:
            raise LookupError(f"no button {button!r} on message {message.id}; it has {message.labels()}")
        if found.get("disabled"):
            raise LookupError(f"the button {button!r} is disabled")
        data = {"custom_id": found["custom_id"], "component_type": 2}
        interaction = self._envelope(message.channel, 3, data)
        interaction.payload["message"] = message.to_json()
        return await self._send(interaction)

    async def react(self, message: Message, emoji: str) -> None:
        if not self.can_see(message) or message.ephemeral:
            raise LookupError(f"{self.user.username} cannot react to message {message.id}")
        await self.fake.reaction_added(message, self.user, emoji)

    async def unreact(self, message: Message, emoji: str) -> None:
        await self.fake.reaction_removed(message, self.user, emoji)


def _subcommands(definition: dict[str, Any], path: list[str]) -> list[dict[str, Any]]:
    """The subcommand (group) definitions along a path such as ["allowance"] of /atelier."""
    found, level = [], definition
    for sub in path:
        match = next((o for o in level.get("options", []) if o["name"] == sub and o["type"] in (1, 2)), None)
        if match is None:
            raise LookupError(f"/{definition['name']} has no subcommand {sub}")
        found.append(match)
        level = match
    return found
