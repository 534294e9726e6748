"""Results: delivery into channels, live progress edits, the buttons on results, and the reactions members use."""

from __future__ import annotations

import logging

import discord
from discord.ext import commands

from bot.discord_bot import AtelierBot
from bot.discord_errors import report
from bot.discord_mentions import NOBODY
from bot.errors import Refusal
from bot.i18n import N_, translate
from bot.store.models import Job, JobState
from cogs._buttons import DELETE, MAIL, RETRY, VARY, JobButton, LegacyJobButton
from cogs._common import (
    GuildContext,
    Interaction,
    answer,
    audited_refusals,
    check_allowed,
    check_job_prompt,
    check_rules,
    guild_context,
    locale_code,
)
from cogs._delivery import DEFAULT_UPLOAD_LIMIT, DiscordDelivery, ProgressEditor
from cogs._remix import open_remix
from cogs._render import STATE_NAMES, result_caption, result_files
from cogs._rules import check_permissions, serves
from cogs._start import rerun_job, tell_started

log = logging.getLogger(__name__)


class Results(commands.Cog):
    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot
        self.delivery = DiscordDelivery(bot)
        self.progress = ProgressEditor(bot)

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(JobButton, LegacyJobButton)
        self.bot.engine.serve(self.delivery, self.progress.on_event)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(JobButton, LegacyJobButton)
        self.bot.engine.unserve(self.progress.on_event)
        await self.progress.close()

    async def on_button(self, interaction: Interaction, action: str, job: Job) -> None:
        """A button on one of `job`'s posts (errors go to the one handler, in cogs._buttons)."""
        if action in ("retry", "vary"):
            await rerun_by_button(interaction, job, vary=action == "vary")
        elif action == "remix":
            await open_remix(interaction, job)
        elif action == "delete":
            await delete_result(interaction, job)
        else:
            await cancel_job(interaction, job)

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        if self.bot.user is None or payload.user_id == self.bot.user.id or payload.guild_id is None:
            return  # our own reactions come back to us too
        emoji = str(payload.emoji)
        if emoji not in (RETRY, VARY, DELETE, MAIL):
            return
        try:
            # Only a message recorded as one of a job's posts means anything, whatever its text says.
            job = await self.bot.engine.job_for_message(payload.message_id)
            if job is None:
                return
            if emoji in (RETRY, VARY):
                await self._rerun(payload, job, vary=emoji == VARY)
            elif emoji == DELETE and str(payload.user_id) == job.subject.user_id:
                channel = self.bot.get_partial_messageable(payload.channel_id, guild_id=payload.guild_id)
                await channel.get_partial_message(payload.message_id).delete()
                self.bot.audit.note(payload.guild_id, f"<@{payload.user_id}> deleted the result of job #{job.id} "
                                                      "(❌ reaction)")
            elif emoji == MAIL and job.state is JobState.SUCCEEDED:
                await self._mail(payload.user_id, job)
        except Exception as exc:
            await report(self.bot, exc, where=f"the {emoji} reaction", user_id=payload.user_id,
                         channel_id=payload.channel_id)

    async def _rerun(self, payload: discord.RawReactionActionEvent, original: Job, *, vary: bool) -> None:
        member = payload.member
        if payload.guild_id is None or member is None or not serves(self.bot.engine.allowed_guilds, payload.guild_id):
            return
        command = original.operation
        async with audited_refusals(self.bot, payload.guild_id, member, command):
            settings = await self.bot.engine.guild_settings(payload.guild_id)
            # The same rules as the Retry and Vary buttons: a reaction is no way around a rule or a cooldown.
            cached = self.bot.get_channel(payload.channel_id)
            in_thread = isinstance(cached, discord.Thread)
            check_rules(settings, command, payload.channel_id, getattr(cached, "parent_id", None) if in_thread
                        else None, member)
            check_permissions(self._permissions_in(cached), in_thread=in_thread)
            check_allowed(self.bot, payload.guild_id, member.id, settings, command)
            channel = self.bot.get_partial_messageable(payload.channel_id, guild_id=payload.guild_id)
            ctx = GuildContext(payload.guild_id, channel, payload.channel_id, member, settings,
                               locale=locale_code(member.guild.preferred_locale))
            await check_job_prompt(self.bot, ctx, command, original.request.get("prompt"))
            await rerun_job(self.bot, ctx, original, vary=vary)

    @staticmethod
    def _permissions_in(channel: object) -> discord.Permissions | None:
        """What the deliverer will face in the channel, from the gateway's cache (a reaction has no app_permissions);
        None when the cache does not know the channel or the bot's member."""
        if isinstance(channel, discord.abc.GuildChannel | discord.Thread) and channel.guild.me is not None:
            return channel.permissions_for(channel.guild.me)
        return None

    async def _mail(self, user_id: int, job: Job) -> None:
        if any(o.nsfw for o in job.outputs):
            return
        files = await result_files(job, self.bot.engine.blobs, limit=DEFAULT_UPLOAD_LIMIT, spoiler=False)
        user = await self.bot.fetch_user(user_id)
        await user.send(result_caption(job), files=files, allowed_mentions=NOBODY)


async def rerun_by_button(interaction: Interaction, original: Job, *, vary: bool) -> None:
    """Anyone may retry or vary a result: the new job is theirs and counts against their quota."""
    bot = interaction.client
    async with audited_refusals(bot, interaction.guild_id, interaction.user, original.operation):
        ctx = await guild_context(interaction, original.operation)
        await check_job_prompt(bot, ctx, original.operation, original.request.get("prompt"))
        job, shown = await rerun_job(bot, ctx, original, vary=vary)
    await tell_started(interaction, job, shown)


async def delete_result(interaction: Interaction, job: Job) -> None:
    if job.subject.user_id != str(interaction.user.id):
        raise Refusal(N_("Only the member who made this can delete it."))
    if interaction.message is not None:
        await interaction.message.delete()
    interaction.client.audit.note(interaction.guild_id, f"{interaction.user.mention} deleted the result of job "
                                                        f"#{job.id}")
    await answer(interaction, translate(interaction.locale, "Deleted the result of job #{id}.", id=job.id))


async def cancel_job(interaction: Interaction, job: Job) -> None:
    if job.subject.user_id != str(interaction.user.id):
        raise Refusal(N_("Only the member who started this job can cancel it."))
    cancelled = await interaction.client.engine.cancel(job.id, job.subject)
    state = STATE_NAMES.get(cancelled.state.value)
    await answer(interaction, translate(interaction.locale, "Job #{id} is {state}.", id=job.id,
                                        state=translate(interaction.locale, state) if state else cancelled.state.value))


async def setup(bot: AtelierBot) -> None:
    await bot.add_cog(Results(bot))
