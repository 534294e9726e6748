"""What every command cog shares: the acknowledgement, guild settings, refusals, and reading attachments."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeAlias

import discord

from bot.discord_bot import AtelierBot
from bot.errors import QuotaError, Refusal
from bot.i18n import N_
from bot.images import load_image
from bot.operations import ImageInput, Operation
from bot.store.models import Subject
from cogs._rules import OTHER_GUILD, RuleRefusal, check_blocked, check_channel, check_permissions, check_prompt, serves

# What every handler receives: `interaction.client` is the bot; `.engine` is its one door into the engine.
Interaction: TypeAlias = discord.Interaction[AtelierBot]

COMMANDS = ("tryon", "filter", "edit", "imagine")
POSTING = (*COMMANDS, "show")  # what posts in the channel it is used in, so needs the bot's permissions there


@dataclass
class GuildContext:
    """Where and for whom a job starts: from a command, a button or a reaction."""

    guild_id: int
    channel: discord.abc.Messageable
    channel_id: int
    member: discord.Member
    settings: dict[str, Any]
    # The guild's language (a Discord locale), which the job's public posts will speak.
    locale: str | None = None
    # The language of the member's Discord client, for what only they read; None where they asked by a reaction.
    member_locale: str | None = None

    @property
    def subject(self) -> Subject:
        roles = tuple(str(r.id) for r in self.member.roles if not r.is_default())
        return Subject.member(self.guild_id, self.member.id, roles)

    def provider_order(self, operation: Operation) -> list[str] | None:
        return self.provider_order_for(operation.value)

    def provider_order_for(self, operation: str) -> list[str] | None:
        order = self.settings.get("provider_order", {}).get(operation)
        return list(order) if order else None


def locale_code(locale: discord.Locale | None) -> str | None:
    """A Discord locale as Discord sends it ("ja", "pt-BR"), one discord.py knows or not; None for none."""
    value = getattr(locale, "value", None)
    return value if isinstance(value, str) and value else None


async def acknowledge(interaction: Interaction) -> None:
    """First thing, always: Discord gives three seconds, and everything after may be slow."""
    if not interaction.response.is_done():
        await interaction.response.defer(ephemeral=True, thinking=True)


async def answer(interaction: Interaction, text: str) -> None:
    """The private answer to a deferred interaction (edits the "thinking…" message only the member sees)."""
    # The token may be gone (an unusually slow path): a private follow-up cannot be sent either.
    with contextlib.suppress(discord.HTTPException):
        await interaction.edit_original_response(content=text[:1900])


async def guild_context(interaction: Interaction, command: str) -> GuildContext:
    if interaction.guild_id is None or not isinstance(interaction.user, discord.Member) \
            or interaction.channel_id is None:
        raise Refusal(N_("Atelier works in servers: use this command in a server channel."))
    bot = interaction.client
    if not serves(bot.engine.allowed_guilds, interaction.guild_id):
        raise Refusal(OTHER_GUILD)
    settings = await bot.engine.guild_settings(interaction.guild_id)
    channel_obj = interaction.channel
    in_thread = isinstance(channel_obj, discord.Thread)
    parent_id = getattr(channel_obj, "parent_id", None) if in_thread else None
    check_rules(settings, command, interaction.channel_id, parent_id, interaction.user)
    if command in POSTING:
        # What the bot may do in this very channel, as Discord computed it for this interaction.
        check_permissions(interaction.app_permissions, in_thread=in_thread)
    check_allowed(bot, interaction.guild_id, interaction.user.id, settings, command)
    # Posting needs only the channel's id: REST does the rest, whatever the gateway's cache holds.
    channel = bot.get_partial_messageable(interaction.channel_id, guild_id=interaction.guild_id)
    return GuildContext(interaction.guild_id, channel, interaction.channel_id, interaction.user, settings,
                        locale=locale_code(interaction.guild_locale), member_locale=locale_code(interaction.locale))


def check_rules(settings: dict[str, Any], command: str, channel_id: int, parent_id: int | None,
                member: discord.Member) -> None:
    """An owner's rules for who may start `command` where: channel rules, then blocked members and roles."""
    check_channel(settings, command, channel_id, parent_id)
    check_blocked(settings, member, command)


async def check_job_prompt(bot: AtelierBot, ctx: GuildContext, command: str, prompt: str | None) -> None:
    """The install's and the guild's prompt blocklists, before anything is sent or charged."""
    await check_prompt(bot.engine.install_blocklist, ctx.settings, prompt, command=command, member=ctx.member)


@contextlib.asynccontextmanager
async def audited_refusals(bot: AtelierBot, guild_id: int | None, member: discord.abc.User,
                           command: str) -> AsyncIterator[None]:
    """Refusals an owner wants to see (a block, the blocklist, a cap) go to the audit log, then on to the member."""
    try:
        yield
    except RuleRefusal as exc:
        bot.audit.note(guild_id, exc.audit)
        raise
    except QuotaError as exc:
        bot.audit.note(guild_id, f"refused /{command} for {member.mention}: {exc.kind} cap reached "
                                 f"({exc.used} of {exc.limit})")
        raise


def check_allowed(bot: AtelierBot, guild_id: int, user_id: int, settings: dict[str, Any], command: str) -> None:
    """The guild's rules for starting `command`, however the member asks (command, button or reaction)."""
    if command in settings.get("disabled_commands", []):
        raise Refusal(N_("/{command} is turned off in this server."), command=command)
    cooldown = float(settings.get("cooldown_s", 0) or 0)
    if cooldown > 0 and command in COMMANDS:
        wait = bot.cooldowns.check(guild_id, user_id, cooldown)
        if wait > 0:
            raise Refusal(N_("Slow down a little: you can start another job in {wait} s."), wait=f"{wait:.0f}")


async def read_attachment(bot: AtelierBot, attachment: discord.Attachment, label: str) -> ImageInput:
    """Download at once (attachment URLs are signed and expire) and decide by decoding, never by name."""
    limits = bot.engine.image_limits
    if attachment.size > limits.max_bytes:
        raise Refusal(N_("The {label} is {size} MB; the limit is {limit} MB."), label=label,
                      size=f"{attachment.size / 1_048_576:.1f}", limit=f"{limits.max_bytes / 1_048_576:.0f}")
    if attachment.size == 0:
        raise Refusal(N_("The {label} is empty (0 bytes)."), label=label)
    try:
        data = await attachment.read()
    except discord.HTTPException as exc:
        raise Refusal(N_("The {label} could not be downloaded from Discord ({status}); please attach it again."),
                      label=label, status=exc.status) from exc
    return await asyncio.to_thread(load_image, data, filename=attachment.filename, limits=limits, label=label)
