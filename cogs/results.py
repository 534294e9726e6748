"""Results: delivery into channels, live progress edits, the buttons on results, and the reactions members use."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from bot.codec import takes_seed
from bot.errors import AtelierError
from bot.store.models import JobState, Origin
from cogs._buttons import DELETE, MAIL, RETRY, VARY, JobButton
from cogs._common import GuildContext, Refusal, answer, bot_of, check_allowed, guild_context, refusal_text
from cogs._delivery import DiscordDelivery, ProgressEditor
from cogs._render import result_caption, result_files
from cogs._start import publish_and_begin

if TYPE_CHECKING:
    from bot.discord_bot import AtelierBot

log = logging.getLogger(__name__)


class Results(commands.Cog):
    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot
        self.delivery = DiscordDelivery(bot)
        self.progress = ProgressEditor(bot)

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(JobButton)
        self.bot.app.runner.deliverers[Origin.DISCORD.value] = self.delivery
        self.bot.app.runner.add_listener(self.progress.on_event)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(JobButton)
        self.bot.app.runner.deliverers.pop(Origin.DISCORD.value, None)
        await self.progress.close()

    async def on_button(self, interaction: discord.Interaction, action: str, job_id: int) -> None:
        try:
            if action in ("retry", "vary"):
                await rerun_by_button(interaction, job_id, vary=action == "vary")
            elif action == "delete":
                await delete_result(interaction, job_id)
            else:
                await cancel_job(interaction, job_id)
        except (Refusal, AtelierError) as exc:
            await answer(interaction, refusal_text(exc))

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        if self.bot.user is None or payload.user_id == self.bot.user.id or payload.guild_id is None:
            return  # our own reactions come back to us too
        emoji = str(payload.emoji)
        if emoji not in (RETRY, VARY, DELETE, MAIL):
            return
        job = await self.bot.app.store.job_by_message(payload.message_id)
        if job is None:
            return
        try:
            if emoji in (RETRY, VARY):
                await self._rerun(payload, job.id, vary=emoji == VARY and takes_seed(job.operation))
            elif emoji == DELETE and str(payload.user_id) == job.subject.user_id:
                channel = self.bot.get_channel(payload.channel_id)
                if isinstance(channel, discord.abc.Messageable) and hasattr(channel, "get_partial_message"):
                    await channel.get_partial_message(payload.message_id).delete()
            elif emoji == MAIL and job.state is JobState.SUCCEEDED:
                await self._mail(payload.user_id, job.id)
        except (AtelierError, discord.HTTPException) as exc:
            await self._tell(payload, refusal_text(exc) if isinstance(exc, AtelierError) else
                             "That did not work; please try again.")

    async def _rerun(self, payload: discord.RawReactionActionEvent, job_id: int, *, vary: bool) -> None:
        guild = self.bot.get_guild(payload.guild_id or 0)
        channel = self.bot.get_channel(payload.channel_id)
        member = payload.member
        if guild is None or member is None or not isinstance(channel, discord.abc.Messageable):
            return
        settings = await self.bot.app.store.guild_settings(guild.id)
        original = await self.bot.app.store.get_job(job_id)
        assert original is not None
        try:
            # The same rules as the Retry and Vary buttons: a reaction is no way around a cooldown.
            check_allowed(self.bot, guild.id, member.id, settings, original.operation)
        except Refusal as exc:
            await self._tell(payload, str(exc))
            return
        ctx = GuildContext(guild, channel, member, settings)
        job = await self.bot.app.runner.rerun(job_id, ctx.subject, vary=vary, channel_id=str(payload.channel_id),
                                              preferred=ctx.provider_order_for(original.operation), start=False,
                                              withhold_nsfw=not getattr(channel, "nsfw", False))
        await publish_and_begin(self.bot, channel, job, None)

    async def _mail(self, user_id: int, job_id: int) -> None:
        job = await self.bot.app.store.get_job(job_id)
        if job is None or any(o.nsfw for o in job.outputs):
            return
        user = self.bot.get_user(user_id) or await self.bot.fetch_user(user_id)
        files = await result_files(job, self.bot.app.blobs, limit=10 * 1024 * 1024, spoiler=False)
        await user.send(result_caption(job), files=files)

    async def _tell(self, payload: discord.RawReactionActionEvent, text: str) -> None:
        """Reactions carry no interaction, so there is no private reply: DM, else a short-lived mention."""
        try:
            user = self.bot.get_user(payload.user_id) or await self.bot.fetch_user(payload.user_id)
            await user.send(text)
        except discord.HTTPException:
            channel = self.bot.get_channel(payload.channel_id)
            if isinstance(channel, discord.abc.Messageable):
                try:
                    await channel.send(f"<@{payload.user_id}> {text}", delete_after=20,
                                       allowed_mentions=discord.AllowedMentions(users=True))
                except discord.HTTPException:
                    log.warning("could not tell member %s: %s", payload.user_id, text)


async def rerun_by_button(interaction: discord.Interaction, job_id: int, *, vary: bool) -> None:
    """Anyone may retry or vary a result: the new job is theirs and counts against their quota."""
    bot = bot_of(interaction)
    original = await bot.app.store.get_job(job_id)
    if original is None:
        raise Refusal(f"Job #{job_id} no longer exists.")
    ctx = await guild_context(interaction, original.operation)
    # 🎲 on an operation without a seed acts as Retry.
    job = await bot.app.runner.rerun(job_id, ctx.subject, vary=vary and takes_seed(original.operation),
                                     channel_id=str(getattr(ctx.channel, "id", "")), start=False,
                                     preferred=ctx.provider_order_for(original.operation),
                                     withhold_nsfw=not getattr(ctx.channel, "nsfw", False))
    await publish_and_begin(bot, ctx.channel, job, interaction)


async def delete_result(interaction: discord.Interaction, job_id: int) -> None:
    bot = bot_of(interaction)
    job = await bot.app.store.get_job(job_id)
    if job is None or job.subject.user_id != str(interaction.user.id):
        raise Refusal("Only the member who made this can delete it.")
    if interaction.message is not None:
        await interaction.message.delete()
    await answer(interaction, f"Deleted the result of job #{job_id}.")


async def cancel_job(interaction: discord.Interaction, job_id: int) -> None:
    bot = bot_of(interaction)
    job = await bot.app.store.get_job(job_id)
    if job is None or job.subject.user_id != str(interaction.user.id):
        raise Refusal("Only the member who started this job can cancel it.")
    cancelled = await bot.app.runner.cancel(job_id, job.subject)
    await answer(interaction, f"Job #{job_id} is {cancelled.state.value}.")


async def setup(bot: AtelierBot) -> None:
    await bot.add_cog(Results(bot))

