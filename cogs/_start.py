"""Starting a job from Discord: record it (quota charged), post its public message, then let it run."""

from __future__ import annotations

import discord

from bot.codec import takes_seed
from bot.discord_bot import AtelierBot
from bot.operations import Request
from bot.store.models import Job
from cogs._common import GuildContext, Interaction, answer
from cogs._delivery import StatusPost
from cogs._render import jump_url


async def start_job(interaction: Interaction, ctx: GuildContext, request: Request) -> Job:
    """Charge the quota and record the job, post its public message, then let it run."""
    shown = StatusPost(interaction.client, ctx.channel, ctx.channel_id)
    job = await interaction.client.engine.start(ctx.subject, request, channel_id=str(ctx.channel_id),
                                                preferred=ctx.provider_order(request.operation), prepare=shown,
                                                withhold_nsfw=not await shows_nsfw(interaction.client, ctx))
    await tell_started(interaction, job, shown)
    return job


async def rerun_job(bot: AtelierBot, ctx: GuildContext, original: Job, *, vary: bool) -> tuple[Job, StatusPost]:
    """Retry or vary `original` as ctx's member's new job (charged to them), shown in ctx's channel like any other.
    🎲 on an operation without a seed acts as Retry."""
    shown = StatusPost(bot, ctx.channel, ctx.channel_id)
    job = await bot.engine.rerun(original, ctx.subject, vary=vary and takes_seed(original.operation),
                                 channel_id=str(ctx.channel_id), prepare=shown,
                                 preferred=ctx.provider_order_for(original.operation),
                                 withhold_nsfw=not await shows_nsfw(bot, ctx))
    return job, shown


async def shows_nsfw(bot: AtelierBot, ctx: GuildContext) -> bool:
    """Whether a result flagged NSFW will be shown in ctx's channel (age-restricted), as the deliverer decides it;
    a job whose result will be withheld is not charged for it. A reaction brings only a partial channel, so the
    flag comes from the gateway's cache or, failing that, from REST; unknown counts as not age-restricted."""
    nsfw = getattr(ctx.channel, "nsfw", None)
    if isinstance(nsfw, bool):
        return nsfw
    channel = bot.get_channel(ctx.channel_id)
    if channel is None:
        try:
            channel = await bot.fetch_channel(ctx.channel_id)
        except discord.HTTPException:
            return False
    return bool(getattr(channel, "nsfw", False))


async def tell_started(interaction: Interaction, job: Job, shown: StatusPost) -> None:
    link = jump_url(job.subject.scope.removeprefix("guild:"), job.channel_id, shown.message_id)
    await answer(interaction, f"Started job #{job.id}" + (f": {link}" if link else "."))
