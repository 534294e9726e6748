"""A Discord job's public status message, posted before the job starts (so that progress has somewhere to go)."""

from __future__ import annotations

import logging

import discord

from bot.discord_bot import AtelierBot
from bot.discord_mentions import NOBODY
from bot.discord_rest import Priority, rest_priority
from bot.store.models import Job, PostKind
from cogs._buttons import status_view
from cogs._render import status_line

log = logging.getLogger(__name__)

STATUS_MENTIONS = NOBODY  # a status message names its owner but pings nobody (the result will)


def guild_of(job: Job) -> int | None:
    scope = job.subject.scope
    return int(scope.removeprefix("guild:")) if scope.startswith("guild:") else None


class StatusPost:
    """The step Runner.create runs before a Discord job starts: post its public status message there and record it,
    so that progress has somewhere to go. A channel the bot may not post in is noted; the job runs all the same."""

    def __init__(self, bot: AtelierBot, channel: discord.abc.Messageable, channel_id: int) -> None:
        self.bot = bot
        self.channel = channel
        self.channel_id = channel_id
        self.message_id: int | None = None

    async def __call__(self, job: Job) -> None:
        store = self.bot.engine
        post, _ = await store.open_post(job.id, PostKind.STATUS, channel_id=self.channel_id)
        try:
            with rest_priority(Priority.STATUS):
                message = await self.channel.send(status_line(job), nonce=post.nonce, view=status_view(job),
                                                  allowed_mentions=STATUS_MENTIONS)
        except (discord.Forbidden, discord.NotFound) as exc:
            # Surely not posted. (Other failures may have posted: the post stays open, and the delivery looks.)
            await store.record_post(post.id, message_id=None, note=f"status not posted ({exc.status} {exc.code})")
            return
        except discord.HTTPException as exc:
            log.warning("job %s: posting its status message failed (%s); it runs anyway", job.id, exc.status)
            return
        await store.record_post(post.id, message_id=message.id)
        self.message_id = message.id
