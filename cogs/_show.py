"""/show: post a finished job's result again in the current channel, with working buttons — to move it elsewhere or
revive an old one. It is one more post of the same job (recorded first, with its own nonce) and charges nothing."""

from __future__ import annotations

import discord

from bot.discord_mentions import NOBODY
from bot.errors import Refusal, Term
from bot.i18n import N_
from bot.store.models import Job, JobState, PostKind
from cogs._buttons import result_view
from cogs._common import GuildContext, Interaction
from cogs._delivery import DEFAULT_UPLOAD_LIMIT, delivered
from cogs._render import STATE_NAMES, failure_caption, result_caption, result_files


async def showable(interaction: Interaction, ctx: GuildContext, job_id: int) -> Job:
    """The job, if this member may show it here: their own, or any of this server's for Manage Server. Someone
    else's job and a job that does not exist get the same answer, so nobody learns which numbers are in use."""
    job = await interaction.client.engine.job(job_id)
    manager = ctx.member.guild_permissions.manage_guild
    if job is None or job.subject.scope != f"guild:{ctx.guild_id}" or \
            (job.subject.user_id != str(ctx.member.id) and not manager):
        raise Refusal(N_("You have no job #{id} in this server (/jobs lists yours)."), id=job_id)
    if not job.state.terminal:
        raise Refusal(N_("Job #{id} is still {state}; its result is posted when it is done."), id=job.id,
                      state=Term(STATE_NAMES.get(job.state.value, job.state.value)))
    posts = await interaction.client.engine.posts_of(job.id)
    if not job.undeliverable and not any(delivered(p) for p in posts):
        raise Refusal(N_("Job #{id}'s result is on its way; try again in a moment."), id=job.id)
    return job


async def show_again(interaction: Interaction, ctx: GuildContext, job: Job) -> discord.Message:
    """Post the job's result in ctx's channel as a new post of the job (its buttons and reactions act on it)."""
    engine = interaction.client.engine
    nsfw = any(o.nsfw for o in job.outputs)
    if nsfw and not bool(getattr(interaction.channel, "nsfw", False)):
        raise Refusal(N_("Job #{id}'s image was flagged NSFW, so it can only be shown in an age-restricted channel."),
                      id=job.id)
    files: list[discord.File] = []
    if job.state is JobState.SUCCEEDED:
        limit = interaction.guild.filesize_limit if interaction.guild is not None else DEFAULT_UPLOAD_LIMIT
        try:
            files = await result_files(job, engine.blobs, limit=limit, spoiler=nsfw)
        except FileNotFoundError:
            raise Refusal(N_("Job #{id}'s images are no longer kept, so it cannot be shown again."),
                          id=job.id) from None
    post, new = await engine.open_post(job.id, PostKind.RESULT, channel_id=ctx.channel_id)
    if not new:
        # An earlier /show died between recording and posting: settle it, and post under a fresh nonce.
        await engine.record_post(post.id, message_id=None, note="re-post interrupted")
        post, _ = await engine.open_post(job.id, PostKind.RESULT, channel_id=ctx.channel_id)
    caption = result_caption(job) if job.state is JobState.SUCCEEDED else failure_caption(job)
    try:
        # The member asked for it here and now: nobody is pinged, the owner included.
        message = await ctx.channel.send(caption, files=files, view=result_view(job), nonce=post.nonce,
                                         allowed_mentions=NOBODY)
    except discord.HTTPException as exc:
        await engine.record_post(post.id, message_id=None, note=f"re-post failed ({exc.status})")
        raise Refusal(N_("Discord refused the post ({status}); check the bot's permissions here."),
                      status=exc.status) from exc
    await engine.record_post(post.id, message_id=message.id)
    return message
