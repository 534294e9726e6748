"""Delivering finished jobs to Discord, and keeping each job's public message up to date while it runs.

Results go to the channel with the bot's own token (never an interaction token, which dies after 15 minutes), as a
new message that mentions the member (an edit notifies nobody). Delivery is retried by the runner's outbox until
it lands; before posting it checks whether the result is already there, so a crash between posting and recording
never posts twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import discord

from bot.codec import takes_seed
from bot.runner import JobEvent
from bot.store.models import Job, JobState
from bot.tasks import TaskSet
from cogs._buttons import MAIL, RETRY, VARY, result_view, status_view
from cogs._common import ALLOWED_MENTIONS
from cogs._render import failure_caption, result_caption, result_files, status_line, status_title

if TYPE_CHECKING:
    from bot.discord_bot import AtelierBot

log = logging.getLogger(__name__)

DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024  # what Discord allows in any guild
EDIT_INTERVAL_S = 2.5  # Discord rate-limits message edits; a few seconds apart reads as "live" anyway
LOOKBACK = 50  # messages searched for an already-posted result


def result_nonce(job: Job) -> str:
    return f"atelier-r{job.id}"


class DiscordDelivery:
    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot

    async def channel_for(self, job: Job) -> discord.abc.Messageable | None:
        if not job.channel_id:
            return None
        channel_id = int(job.channel_id)
        channel = self.bot.get_channel(channel_id)
        if channel is None:
            try:
                channel = await self.bot.fetch_channel(channel_id)
            except (discord.NotFound, discord.Forbidden):
                return None
        return channel if isinstance(channel, discord.abc.Messageable) else None

    async def deliver(self, job: Job) -> None:
        if job.message_id:
            return  # already posted and recorded
        channel = await self.channel_for(job)
        message: discord.Message | None = None
        problem = "the channel is gone"
        if channel is not None:
            try:
                if self._status_id(job) is None:
                    job = await self._recover_status(channel, job)
                if job.extra.get("posting"):
                    # A previous attempt may have posted and died before recording it: look first.
                    message = await self._already_posted(channel, job)
                else:
                    job = await self.bot.app.store.update_job(job.id, now=self.bot.app.runner.clock(),
                                                              extra={**job.extra, "posting": True})
                message = message or await self._post(channel, job)
            except (discord.Forbidden, discord.NotFound) as exc:
                problem = f"{type(exc).__name__} {exc.code}"
        if message is None:
            # No permission to post or attach there, or the channel was deleted: try the member's DMs instead.
            log.warning("job %s: cannot post in channel %s (%s); trying a direct message", job.id, job.channel_id,
                        problem)
            message = await self._dm(job)
            if message is None:
                log.warning("job %s: direct messages are closed too; the result stays in /jobs", job.id)
                await self._record(job, None, note="could not be posted: no permission and DMs closed")
                return
        await self._record(job, message)
        await self._finish_status(channel, job)
        if message is not None and job.state is JobState.SUCCEEDED:
            await self._add_reactions(message, job)

    async def _already_posted(self, channel: discord.abc.Messageable, job: Job) -> discord.Message | None:
        """The receiver has no idempotency key beyond a short-lived nonce: look before posting."""
        marker = re.compile(rf"\bjob #{job.id}\b")
        status_id = self._status_id(job)
        return await self._find_own(channel, lambda m: m.id != status_id and marker.search(m.content) is not None)

    async def _recover_status(self, channel: discord.abc.Messageable, job: Job) -> Job:
        """A status message posted just before a crash, its id never recorded, would say "waiting" forever (and
        look like the result): find it, so that it is finished and replied to like any other."""
        title = status_title(job)
        found = await self._find_own(channel, lambda m: m.content.startswith(title))
        if found is None:
            return job
        return await self.bot.app.store.update_job(job.id, now=self.bot.app.runner.clock(),
                                                   extra={**job.extra, "status_message_id": str(found.id)})

    async def _find_own(self, channel: discord.abc.Messageable,
                        match: Callable[[discord.Message], bool]) -> discord.Message | None:
        """The newest of the bot's own recent messages in the channel that matches."""
        assert self.bot.user is not None
        with contextlib.suppress(discord.HTTPException):
            async for message in channel.history(limit=LOOKBACK):
                if message.author.id == self.bot.user.id and match(message):
                    return message
        return None

    @staticmethod
    def _status_id(job: Job) -> int | None:
        value = job.extra.get("status_message_id")
        return int(value) if value else None

    async def _post(self, channel: discord.abc.Messageable, job: Job) -> discord.Message:
        reference = None
        status_id = self._status_id(job)
        if status_id is not None and isinstance(channel, discord.TextChannel | discord.Thread):
            reference = discord.MessageReference(message_id=status_id, channel_id=channel.id,
                                                 fail_if_not_exists=False)
        if job.state is not JobState.SUCCEEDED:
            return await channel.send(failure_caption(job), view=result_view(job), nonce=result_nonce(job),
                                      reference=reference, allowed_mentions=ALLOWED_MENTIONS)  # type: ignore[arg-type]
        nsfw = any(o.nsfw for o in job.outputs)
        channel_nsfw = bool(getattr(channel, "nsfw", False))
        if nsfw and not channel_nsfw:
            text = (f"<@{job.subject.user_id}> job #{job.id} finished, but the provider flagged the image as "
                    f"NSFW, so it is only posted in age-restricted channels. Use 🔄 to try again.")
            return await channel.send(text, view=result_view(job), nonce=result_nonce(job), reference=reference,  # type: ignore[arg-type]
                                      allowed_mentions=ALLOWED_MENTIONS)
        limit = getattr(getattr(channel, "guild", None), "filesize_limit", DEFAULT_UPLOAD_LIMIT)
        files = await result_files(job, self.bot.app.blobs, limit=limit, spoiler=nsfw)
        return await channel.send(result_caption(job), files=files, view=result_view(job), nonce=result_nonce(job),
                                  reference=reference, allowed_mentions=ALLOWED_MENTIONS)  # type: ignore[arg-type]

    async def _dm(self, job: Job) -> discord.Message | None:
        try:
            user = self.bot.get_user(int(job.subject.user_id)) or await self.bot.fetch_user(int(job.subject.user_id))
            if job.state is JobState.SUCCEEDED and not any(o.nsfw for o in job.outputs):
                files = await result_files(job, self.bot.app.blobs, limit=DEFAULT_UPLOAD_LIMIT, spoiler=False)
                return await user.send(result_caption(job), files=files)
            return await user.send(failure_caption(job) if job.state is not JobState.SUCCEEDED else
                                   f"Job #{job.id} finished; its image was flagged NSFW and is not sent by DM.")
        except discord.HTTPException:
            return None

    async def _record(self, job: Job, message: discord.Message | None, note: str | None = None) -> None:
        fields: dict[str, object] = {}
        if message is not None and message.guild is not None:
            fields["message_id"] = str(message.id)
        if note:
            fields["extra"] = {**job.extra, "delivery_note": note}
        if fields:
            await self.bot.app.store.update_job(job.id, now=self.bot.app.runner.clock(), **fields)

    async def _finish_status(self, channel: discord.abc.Messageable | None, job: Job) -> None:
        status_id = self._status_id(job)
        if channel is None or status_id is None or not hasattr(channel, "get_partial_message"):
            return
        with contextlib.suppress(discord.HTTPException):
            await channel.get_partial_message(status_id).edit(content=status_line(job), view=None)

    async def _add_reactions(self, message: discord.Message, job: Job) -> None:
        with contextlib.suppress(discord.HTTPException):
            await message.add_reaction(RETRY)
            if takes_seed(job.operation):
                await message.add_reaction(VARY)
            await message.add_reaction(MAIL)


class ProgressEditor:
    """Edits each job's public message as it moves, at most every EDIT_INTERVAL_S (the latest state wins)."""

    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot
        self.tasks = TaskSet("progress")
        self._latest: dict[int, str] = {}
        self._last_edit: dict[int, float] = {}
        self._scheduled: set[int] = set()
        self._edits: dict[int, set[asyncio.Task[None]]] = {}  # per job: edits waiting or on their way

    async def on_event(self, event: JobEvent) -> None:
        job = event.job
        if event.kind == "finished":
            self._latest.pop(job.id, None)  # the delivery writes the final line
            self._last_edit.pop(job.id, None)
            # An edit still on its way (waiting its turn, or retrying after Discord's 429) would land after the
            # final line and leave the message saying "running" under a delivered result.
            edits = self._edits.pop(job.id, set())
            for task in edits:
                task.cancel()
            if edits:
                await asyncio.wait(edits)
            return
        if job.origin.value != "discord" or not job.extra.get("status_message_id"):
            return
        self._latest[job.id] = status_line(job, event.status, event.place_in_line)
        if job.id not in self._scheduled:
            self._scheduled.add(job.id)
            task = self.tasks.spawn(self._edit_soon(job), name=f"edit-{job.id}")
            self._edits.setdefault(job.id, set()).add(task)
            task.add_done_callback(lambda done: self._edits.get(job.id, set()).discard(done))

    async def _edit_soon(self, job: Job) -> None:
        try:
            wait = EDIT_INTERVAL_S - (time.monotonic() - self._last_edit.get(job.id, 0.0))
            if wait > 0:
                await asyncio.sleep(wait)
        finally:
            self._scheduled.discard(job.id)
        text = self._latest.pop(job.id, None)
        if text is None or not job.channel_id:
            return
        self._last_edit[job.id] = time.monotonic()
        channel = self.bot.get_channel(int(job.channel_id))
        if channel is None or not hasattr(channel, "get_partial_message"):
            return
        with contextlib.suppress(discord.HTTPException):
            await channel.get_partial_message(int(job.extra["status_message_id"])).edit(
                content=text, view=status_view(job))

    async def close(self) -> None:
        await self.tasks.close()
