"""Outfits: `/tryon` with a second garment runs as two try-on jobs, the second trying its garment on the first's
result. The first step's delivery is the second step's start; the member sees one result, the second's."""

from __future__ import annotations

import logging

from bot.discord_bot import AtelierBot
from bot.errors import AtelierError
from bot.store.models import OUTFIT_KEY, OUTFIT_STEP_KEY, Job, JobState, PostKind
from cogs._status import StatusPost, guild_of

log = logging.getLogger(__name__)


def first_step_done(job: Job) -> bool:
    return bool(job.extra.get(OUTFIT_KEY)) and job.state is JobState.SUCCEEDED and bool(job.outputs)


def second_step(job: Job) -> bool:
    return job.extra.get(OUTFIT_STEP_KEY) == 2 and job.parent_job_id is not None


async def continue_outfit(bot: AtelierBot, first: Job) -> bool:
    """Start the second step, exactly once (the first step's result post records it, and a delivery retried after
    a crash finds the child it already made). False when it cannot start (a quota or a cap refused it, the inputs
    are gone): then the first step's result is delivered as the member's result."""
    engine = bot.engine
    post, new = await engine.open_post(first.id, PostKind.RESULT, channel_id=first.channel_id)
    if not new:
        made = [c for c in await engine.child_jobs(first.id) if c.extra.get(OUTFIT_STEP_KEY) == 2]
        if made:
            await engine.record_post(post.id, message_id=None, note=f"outfit: continued as job #{made[0].id}")
            return True
    if not first.channel_id:
        return False
    channel_id = int(first.channel_id)
    shown = StatusPost(bot, bot.get_partial_messageable(channel_id, guild_id=guild_of(first)), channel_id)
    try:
        second = await engine.continue_outfit(first, prepare=shown)
    except (AtelierError, FileNotFoundError) as exc:
        log.warning("job %s: the outfit's second step could not start (%s); its first step is the result",
                    first.id, exc)
        return False
    await engine.record_post(post.id, message_id=None, note=f"outfit: continued as job #{second.id}")
    return True


async def settle_failed_second_step(bot: AtelierBot, second: Job) -> None:
    """The second step failed, so the member got no image from the outfit: its first step costs nothing either."""
    if second.state is JobState.SUCCEEDED or second.parent_job_id is None:
        return
    first = await bot.engine.job(second.parent_job_id)
    if first is not None:
        await bot.engine.received_nothing(first)
