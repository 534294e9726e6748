"""Starting a job from Discord: record it (quota charged), post its public message, then let it run."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord

from bot.operations import Request
from bot.store.models import Job, Origin
from cogs._buttons import status_view
from cogs._common import GuildContext, answer, bot_of
from cogs._render import jump_url, status_line

if TYPE_CHECKING:
    from bot.discord_bot import AtelierBot


async def start_job(interaction: discord.Interaction, ctx: GuildContext, request: Request) -> Job:
    """Charge the quota and record the job, post its public message, then let it run."""
    bot = bot_of(interaction)
    runner = bot.app.runner
    job = await runner.create(ctx.subject, Origin.DISCORD, request, preferred=ctx.provider_order(request.operation),
                              channel_id=str(getattr(ctx.channel, "id", "")), start=False,
                              withhold_nsfw=not getattr(ctx.channel, "nsfw", False))
    return await publish_and_begin(bot, ctx.channel, job, interaction)


async def publish_and_begin(bot: AtelierBot, channel: discord.abc.Messageable, job: Job,
                            interaction: discord.Interaction | None) -> Job:
    try:
        message = await channel.send(status_line(job), nonce=f"atelier-s{job.id}", view=status_view(job),
                                     allowed_mentions=discord.AllowedMentions.none())
    except discord.HTTPException:
        message = None  # no permission to post here: the job still runs and is delivered by DM or listed in /jobs
    if message is not None:
        job = await bot.app.store.update_job(job.id, now=bot.app.runner.clock(),
                                             extra={**job.extra, "status_message_id": str(message.id)})
    bot.app.runner.begin(job.id)
    if interaction is not None:
        link = jump_url(job.subject.scope.removeprefix("guild:"), job.channel_id,
                        message.id if message else None)
        await answer(interaction, f"Started job #{job.id}" + (f": {link}" if link else "."))
    return job
