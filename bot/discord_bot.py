"""The Discord side: a thin commands.Bot that loads every cog in `cogs/` and syncs the command tree.

Feature logic lives in the cogs; the job engine (runner, store, providers) is built in bot.app and injected, and the
cogs reach it only through `bot.engine` (bot.engine.Engine). This module imports no cog: cogs depend on it, never the
other way round.
"""

from __future__ import annotations

import importlib.util
import logging
import pkgutil
from typing import Any

import discord
import yarl
from discord.ext import commands

from bot.app import App
from bot.command_sync import publish_if_changed
from bot.cooldowns import Cooldowns
from bot.discord_audit import SETTING as AUDIT_SETTING
from bot.discord_audit import AuditLog, discord_sender
from bot.discord_errors import AtelierTree, answering
from bot.discord_mentions import NOBODY
from bot.discord_metrics import http_trace, shards, shards_ready
from bot.discord_rest import install_budget
from bot.engine import Engine
from bot.i18n.translator import CatalogTranslator
from bot.ops import metrics
from bot.settings import Settings

log = logging.getLogger(__name__)

# Everything the bot does needs no privileged intent: slash commands, components and reactions.
INTENTS = discord.Intents.none()
INTENTS.guilds = True
INTENTS.guild_reactions = True
INTENTS.dm_reactions = True

# The permissions the invite link asks for, exactly those the bot uses.
PERMISSIONS = discord.Permissions(send_messages=True, attach_files=True, embed_links=True, add_reactions=True,
                                  read_message_history=True)


def point_at(settings: Settings) -> None:
    """Aim discord.py at another Discord (a local test double) when the settings say so; default: Discord."""
    discord.http.Route.BASE = settings.discord_api_base.rstrip("/")
    if settings.discord_gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


class AtelierBot(commands.Bot):
    def __init__(self, app: App, *, start_runner: bool = True, **client_options: Any) -> None:
        # Atelier never joins voice: the warnings about missing voice libraries would only confuse operators.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        # Nothing the bot sends pings anyone unless that message names who (bot.discord_mentions).
        super().__init__(command_prefix=commands.when_mentioned, intents=INTENTS, help_command=None,
                         tree_cls=AtelierTree, allowed_mentions=NOBODY,
                         http_trace=http_trace(app.settings.discord_api_base), **client_options)
        self.app = app
        self.rest_budget = install_budget(self, app)  # every bot-token REST request waits its turn (bot.discord_rest)
        # Ready means the gateway's shards are connected too; the metrics show them (bot.discord_metrics).
        app.health.add_check("discord", lambda: shards_ready(self))
        metrics.VIEWS.shards = lambda: shards(self)
        if app.drain is not None:  # a drain lets the members' commands under way get their answers
            app.drain.add_busy("answers", answering)
        self.engine = Engine(app)  # the cogs' only way into the engine
        self.cooldowns = Cooldowns()
        self.start_runner = start_runner
        self.audit = AuditLog(discord_sender(self), self._audit_channel)

    async def _audit_channel(self, guild_id: int) -> int | None:
        channel = (await self.engine.guild_settings(guild_id)).get(AUDIT_SETTING)
        return int(channel) if channel else None

    async def setup_hook(self) -> None:
        await self.load_cogs()
        self.audit.start()
        # Before the sync: the published commands carry their translations (and their digest covers them).
        await self.tree.set_translator(CatalogTranslator())
        await self.sync_commands()
        if self.start_runner:
            # Jobs resume only now, when the cogs that deliver them are loaded.
            await self.app.runner.start()

    async def load_cogs(self) -> None:
        # Found by path, not imported: the cogs import this module, and it must not import them back.
        spec = importlib.util.find_spec("cogs")
        assert spec is not None and spec.submodule_search_locations is not None
        for module in pkgutil.iter_modules(spec.submodule_search_locations):
            if not module.name.startswith("_"):
                await self.load_extension(f"cogs.{module.name}")

    async def sync_commands(self) -> None:
        """Publish the slash commands where this installation serves (bot.worker's WorkerBot publishes none), each
        scope only when its commands changed since they were last published, by whichever process comes first
        (bot.command_sync)."""
        guild_ids = self.app.settings.guild_ids
        allowed = self.engine.allowed_guilds
        scopes: list[discord.Object | None]
        if allowed:
            # Serving listed guilds only: commands exist there and nowhere else (stale global ones are cleared).
            targets = sorted(allowed & set(guild_ids)) if guild_ids else sorted(allowed)
            scopes = [discord.Object(id=guild_id) for guild_id in targets]
            guild_ids = targets
        elif guild_ids:
            scopes = [discord.Object(id=guild_id) for guild_id in guild_ids]
        else:
            scopes = [None]
        for guild in scopes:
            if guild is not None:
                self.tree.copy_global_to(guild=guild)
        if allowed:
            self.tree.clear_commands(guild=None)
            scopes.append(None)
        published = [guild for guild in scopes if await publish_if_changed(self.tree, self.app.store, guild)]
        where = f"guilds {guild_ids}" if guild_ids else "all guilds (global)"
        if published:
            log.info("commands synced to %s", where)
        else:
            log.info("commands for %s unchanged since last published: not synced again", where)

    async def on_ready(self) -> None:
        assert self.user is not None
        log.info("READY as %s (%s)", self.user, self.user.id)

    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self._leave_if_not_served(guild)

    async def on_guild_available(self, guild: discord.Guild) -> None:
        await self._leave_if_not_served(guild)

    async def _leave_if_not_served(self, guild: discord.Guild) -> None:
        allowed = self.engine.allowed_guilds
        if not allowed or guild.id in allowed:
            return
        if not self.engine.leave_other_guilds:
            log.info("guild %s (%s) is not in DISCORD_ALLOWED_GUILDS: its members are told so", guild.id,
                     guild.name)
            return
        log.warning("leaving guild %s (%s): not in DISCORD_ALLOWED_GUILDS", guild.id, guild.name)
        try:
            await guild.leave()
        except discord.HTTPException as exc:
            log.warning("could not leave guild %s: %s", guild.id, exc)

    async def close(self) -> None:
        await self.audit.close()
        await super().close()

