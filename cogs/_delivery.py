"""Delivering finished jobs to Discord, and keeping each job's public message up to date while it runs.

Results go to the channel with the bot's own token (never an interaction token, which dies after 15 minutes), as a
new message that mentions the member (an edit notifies nobody). Delivery is retried by the runner's outbox until it
lands. Every post is recorded (bot.store: discord_posts) before it is sent, with a nonce of its own; a post that was
started but never recorded may have reached Discord, so before posting again the channel is searched for a message
carrying this job's token in its buttons. Text proves nothing: anyone's prompt can say "job #1".

Everything here works over REST alone (channel, guild upload limit and NSFW flag are fetched), because deliveries
also run before the gateway is connected, and in processes that never connect it.

Every request here waits its turn in the install's REST budget (bot.discord_rest): a delivery's at RESULT, the
status message's final edit at STATUS, progress edits at PROGRESS (spaced out so that all the jobs editing together
fit in what the more urgent requests leave), the result's reactions at EXTRA and only while the budget has room.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable

import discord
from async_lru import alru_cache

from bot.codec import takes_seed
from bot.discord_audit import quote
from bot.discord_bot import AtelierBot
from bot.discord_mentions import NOBODY, only
from bot.discord_rest import Priority, rest_priority
from bot.errors import AtelierError
from bot.i18n import translate
from bot.jobs import JobEvent
from bot.money.caps import usd
from bot.store.models import DiscordPost, Job, JobState, PostKind
from bot.tasks import TaskSet
from cogs._buttons import (
    MAIL,
    RESULT_ACTIONS,
    RETRY,
    VARY,
    carries_legacy_id,
    carries_token,
    result_view,
    status_view,
)
from cogs._outfits import continue_outfit, first_step_done, second_step, settle_failed_second_step
from cogs._render import (
    as_its_member_reads,
    failure_caption,
    locale_of,
    nsfw_caption,
    result_caption,
    result_files,
    status_line,
)
from cogs._status import STATUS_MENTIONS, guild_of

log = logging.getLogger(__name__)

DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024  # what Discord allows in any guild
CHANNEL_TTL_S = 60.0  # a channel read over REST for a delivery serves the next ones this long
UPLOAD_LIMIT_TTL_S = 600.0  # a guild's upload limit changes with its boost level: rarely
EDIT_INTERVAL_S = 2.5  # Discord rate-limits message edits; a few seconds apart reads as "live" anyway
SHORT_WHEN_S = 2.5  # the budget is short when the jobs editing every this often would need more than is spare
REACTIONS = 3  # at most: retry, vary, DM me
LOOKBACK = 50  # messages searched for an already-posted result


def status_message_id(posts: list[DiscordPost]) -> int | None:
    ids = [p.message_id for p in posts if p.kind is PostKind.STATUS and p.message_id]
    return int(ids[-1]) if ids else None


def result_mentions(job: Job) -> discord.AllowedMentions:
    """What a result (or failure) post may ping: its owner, whatever the caption quotes from the prompt."""
    return only(job.subject.user_id)


def delivered(post: DiscordPost) -> bool:
    """A result that reached the member, or a final word on why it could not."""
    return (post.kind in (PostKind.RESULT, PostKind.DM) and post.message_id is not None) or \
        (post.kind is PostKind.RESULT and post.note is not None)


class DiscordDelivery:
    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot
        # Kept a while, and read once however many deliveries ask at the same moment (alru_cache shares the call).
        self._fetch_channel = alru_cache(maxsize=4096, ttl=CHANNEL_TTL_S)(self._read_channel)
        self._fetch_upload_limit = alru_cache(maxsize=4096, ttl=UPLOAD_LIMIT_TTL_S)(self._read_upload_limit)

    async def channel_for(self, job: Job) -> discord.abc.Messageable | None:
        """The job's channel as Discord says it is (REST, so any process can deliver any job: a worker has no
        gateway cache), kept a minute: thousands of results in a few channels must not read each channel thousands
        of times. A post refused there (deleted, permissions gone) forgets it (see _post_in_channel)."""
        if not job.channel_id:
            return None
        return await self._fetch_channel(int(job.channel_id))

    async def _read_channel(self, channel_id: int) -> discord.abc.Messageable | None:
        try:
            channel = await self.bot.fetch_channel(channel_id)
        except (discord.NotFound, discord.Forbidden):
            return None
        return channel if isinstance(channel, discord.abc.Messageable) else None

    async def upload_limit(self, job: Job) -> int:
        guild_id = guild_of(job)
        if guild_id is None:
            return DEFAULT_UPLOAD_LIMIT
        guild = self.bot.get_guild(guild_id)
        if guild is not None:
            return guild.filesize_limit
        return await self._fetch_upload_limit(guild_id)

    async def _read_upload_limit(self, guild_id: int) -> int:
        try:
            return (await self.bot.fetch_guild(guild_id)).filesize_limit
        except discord.HTTPException:
            return DEFAULT_UPLOAD_LIMIT

    async def deliver(self, job: Job) -> None:
        with rest_priority(Priority.RESULT):  # the channel, the lookup, the post: all of it is the result's
            await self._deliver(job)

    async def _deliver(self, job: Job) -> None:
        store = self.bot.engine
        posts = await store.posts_of(job.id)
        if job.message_id or any(delivered(p) for p in posts):
            return  # already delivered and recorded
        if first_step_done(job) and await continue_outfit(self.bot, job):
            await self._finish_status(job)  # the member's result is the second step's
            return
        if second_step(job):
            await settle_failed_second_step(self.bot, job)
        if job.private_delivery:
            message = await self._privately(job)
            await self._finish_status(job)
            if message is not None:
                self._audit(job, message, cost=await self._cost(job))
            return
        message, problem, result = await self._post_in_channel(job, posts)
        if message is None:
            message = await self._dm_instead(job, problem, result)
            if message is None:
                return
        await self._finish_status(job)
        self._audit(job, message, cost=await self._cost(job))
        if job.state is JobState.SUCCEEDED and message.guild is not None:
            await self._add_reactions(message, job)

    async def _post_in_channel(self, job: Job, posts: list[DiscordPost]
                               ) -> tuple[discord.Message | None, str, DiscordPost | None]:
        """The result posted (or found already posted) in the job's channel; else None and why not, with the
        result's post row when one was opened."""
        store = self.bot.engine
        channel = await self.channel_for(job)
        if channel is None:
            return None, "the channel is gone", None
        result: DiscordPost | None = None
        try:
            status = next((p for p in reversed(posts) if p.kind is PostKind.STATUS), None)
            if status is not None and not status.settled:
                await self._recover_status(channel, job, status)
            result, new = await store.open_post(job.id, PostKind.RESULT, channel_id=job.channel_id)
            message: discord.Message | None = None
            if not new:
                # An earlier attempt may have posted and died (or lost Discord's answer): look first.
                message = await self._already_posted(channel, job, result,
                                                      status_message_id(await store.posts_of(job.id)))
            message = message or await self._post(channel, job, result)
            await store.record_post(result.id, message_id=message.id, in_guild=message.guild is not None)
        except (discord.Forbidden, discord.NotFound) as exc:
            if job.channel_id:  # read it afresh next time: it was deleted, or our permissions changed
                self._fetch_channel.cache_invalidate(int(job.channel_id))
            return None, f"{type(exc).__name__} {exc.code}", result
        return message, "", result

    async def _dm_instead(self, job: Job, problem: str, result: DiscordPost | None) -> discord.Message | None:
        """No permission to post or attach there, or the channel was deleted: try the member's DMs instead, and
        record what became of the result either way."""
        store = self.bot.engine
        log.warning("job %s: cannot post in channel %s (%s); trying a direct message", job.id, job.channel_id,
                    problem)
        message = await self._dm(job)
        note = (f"sent by direct message: could not be posted in the channel ({problem})" if message is not None
                else "could not be posted: no permission and DMs closed")
        if message is None:
            log.warning("job %s: direct messages are closed too; the result stays in /jobs", job.id)
            await store.received_nothing(job)
        if result is None:
            result, _ = await store.open_post(job.id, PostKind.RESULT, channel_id=job.channel_id)
        await store.record_post(result.id, message_id=None, note=note)
        return message

    async def _privately(self, job: Job) -> discord.Message | None:
        """The member asked for results by direct message (/settings): never in the channel, even when DMs are
        closed — then the result stays in /jobs and /show, and is not charged."""
        store = self.bot.engine
        message = await self._dm(job)
        result, _ = await store.open_post(job.id, PostKind.RESULT, channel_id=job.channel_id)
        if message is None:
            await store.received_nothing(job)
            note = "not sent: results go by direct message (/settings), and direct messages are closed"
        else:
            note = "sent by direct message (/settings)"
        await store.record_post(result.id, message_id=None, note=note)
        return message

    async def _cost(self, job: Job) -> str | None:
        """What the job cost, as settled when it ended (the audit line's; never a reason to fail a delivery)."""
        try:
            return usd(await self.bot.engine.reserved_cost(job.id))
        except AtelierError as exc:
            log.warning("job %s: its cost could not be read for the audit log: %s", job.id, exc)
            return None

    def _audit(self, job: Job, message: discord.Message, *, cost: str | None) -> None:
        """One line per job in the guild's audit log (queued: the delivery never waits on it)."""
        prompt = job.request.get("prompt") or job.request.get("name")
        images = len(message.attachments)  # what the member got: none when withheld as NSFW or failed
        link = message.jump_url if message.guild is not None else "sent by direct message"
        self.bot.audit.note(guild_of(job), " · ".join(filter(None, [
            f"job #{job.id} by <@{job.subject.user_id}>: /{job.operation}", quote(prompt) if prompt else None,
            job.provider, f"{job.state.value}, {images} image(s)", cost, link])))

    async def _already_posted(self, channel: discord.abc.Messageable, job: Job, post: DiscordPost,
                              status_id: int | None) -> discord.Message | None:
        """The receiver has no idempotency key beyond a short-lived nonce: look before posting.

        A post begun by the version before tokens carries old buttons (the row id, which any database has): it is
        believed only as a reply to this job's status message, whose id this database recorded."""
        def ours(message: discord.Message) -> bool:
            if carries_token(message, job.token, RESULT_ACTIONS):
                return True
            replies_to_status = status_id is not None and message.reference is not None and \
                message.reference.message_id == status_id
            return post.legacy and replies_to_status and carries_legacy_id(message, job.id, RESULT_ACTIONS)

        return await self._find_own(channel, ours)

    async def _recover_status(self, channel: discord.abc.Messageable, job: Job, status: DiscordPost) -> None:
        """A status message posted just before a crash, its id never recorded, would say "waiting" forever (and
        look like the result): find it, so that it is finished and replied to like any other."""
        found = await self._find_own(channel, lambda m: carries_token(m, job.token, ("cancel",)))
        if found is not None:
            await self.bot.engine.record_post(status.id, message_id=found.id)

    async def _find_own(self, channel: discord.abc.Messageable,
                        match: Callable[[discord.Message], bool]) -> discord.Message | None:
        """The newest of the bot's own recent messages in the channel that matches."""
        assert self.bot.user is not None
        with contextlib.suppress(discord.HTTPException):
            async for message in channel.history(limit=LOOKBACK):
                if message.author.id == self.bot.user.id and match(message):
                    return message
        return None

    async def _post(self, channel: discord.abc.Messageable, job: Job, post: DiscordPost) -> discord.Message:
        reference = None
        status_id = status_message_id(await self.bot.engine.posts_of(job.id))
        if status_id is not None and isinstance(channel, discord.TextChannel | discord.Thread):
            reference = discord.MessageReference(message_id=status_id, channel_id=channel.id,
                                                 fail_if_not_exists=False)
        mentions = result_mentions(job)
        if job.state is not JobState.SUCCEEDED:
            return await channel.send(failure_caption(job), view=result_view(job), nonce=post.nonce,
                                      reference=reference, allowed_mentions=mentions)  # type: ignore[arg-type]
        nsfw = any(o.nsfw for o in job.outputs)
        if nsfw and not bool(getattr(channel, "nsfw", False)):
            await self.bot.engine.received_nothing(job)  # before the post: a crash after it must not charge
            return await channel.send(nsfw_caption(job), view=result_view(job), nonce=post.nonce,
                                      reference=reference, allowed_mentions=mentions)  # type: ignore[arg-type]
        files = await result_files(job, self.bot.engine.blobs, limit=await self.upload_limit(job), spoiler=nsfw)
        return await channel.send(result_caption(job), files=files, view=result_view(job), nonce=post.nonce,
                                  reference=reference, allowed_mentions=mentions)  # type: ignore[arg-type]

    async def _dm(self, job: Job) -> discord.Message | None:
        store = self.bot.engine
        mine = as_its_member_reads(job)  # the captions in the member's own language
        post, _ = await store.open_post(job.id, PostKind.DM, channel_id=None)
        try:
            user = await self.bot.fetch_user(int(job.subject.user_id))
            if job.state is JobState.SUCCEEDED and not any(o.nsfw for o in job.outputs):
                files = await result_files(job, self.bot.engine.blobs, limit=DEFAULT_UPLOAD_LIMIT, spoiler=False)
                message = await user.send(result_caption(mine), files=files, nonce=post.nonce,
                                          allowed_mentions=NOBODY)
            else:
                if job.state is JobState.SUCCEEDED:
                    await store.received_nothing(job)  # its images are flagged NSFW: none goes by DM
                message = await user.send(failure_caption(mine) if job.state is not JobState.SUCCEEDED else
                                          translate(locale_of(mine), "Job #{id} finished; its image was flagged NSFW "
                                                    "and is not sent by DM.", id=job.id),
                                          nonce=post.nonce, allowed_mentions=NOBODY)
        except discord.HTTPException as exc:
            await store.record_post(post.id, message_id=None, note=f"direct message refused ({exc.status})")
            return None
        await store.record_post(post.id, message_id=message.id, channel_id=message.channel.id, in_guild=False)
        return message

    async def _finish_status(self, job: Job) -> None:
        status_id = status_message_id(await self.bot.engine.posts_of(job.id))
        if status_id is None or not job.channel_id:
            return
        channel = self.bot.get_partial_messageable(int(job.channel_id), guild_id=guild_of(job))
        with contextlib.suppress(discord.HTTPException), rest_priority(Priority.STATUS):
            await channel.get_partial_message(status_id).edit(content=status_line(job), view=None,
                                                              allowed_mentions=STATUS_MENTIONS)

    async def _add_reactions(self, message: discord.Message, job: Job) -> None:
        """Three requests for a shortcut: worth it while the budget has room, left out when it is short. The
        result's buttons still offer Retry, Vary, Remix and Delete, and a member may add the reactions (✉️: send
        by DM) themselves; cogs.results answers them either way."""
        budget = self.bot.rest_budget
        if not budget.has_room(REACTIONS):
            budget.skipped()
            return
        with contextlib.suppress(discord.HTTPException), rest_priority(Priority.EXTRA):
            await message.add_reaction(RETRY)
            if takes_seed(job.operation):
                await message.add_reaction(VARY)
            await message.add_reaction(MAIL)


class ProgressEditor:
    """Edits each job's public message as it moves (the latest state wins), only when its text changes, and at
    most every EDIT_INTERVAL_S, or further apart when the jobs editing together would need more than the REST
    budget has spare after results, status messages and the audit log: the interval grows to
    editing jobs / spare rate, so progress slows down under load instead of queueing behind the results."""

    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot
        self.tasks = TaskSet("progress")
        self._latest: dict[int, str] = {}
        self._last_edit: dict[int, float] = {}
        self._shown: dict[int, str] = {}  # the text each job's message shows, as last edited here
        self._editing: set[int] = set()  # jobs under way whose message this process keeps up to date
        self._scheduled: set[int] = set()
        self._edits: dict[int, set[asyncio.Task[None]]] = {}  # per job: edits waiting or on their way

    async def on_event(self, event: JobEvent) -> None:
        job = event.job
        if event.kind == "finished":
            self._latest.pop(job.id, None)  # the delivery writes the final line
            self._last_edit.pop(job.id, None)
            self._shown.pop(job.id, None)
            self._editing.discard(job.id)
            # An edit still on its way (waiting its turn, or retrying after Discord's 429) would land after the
            # final line and leave the message saying "running" under a delivered result.
            edits = self._edits.pop(job.id, set())
            for task in edits:
                task.cancel()
            if edits:
                await asyncio.wait(edits)
            return
        if job.origin.value != "discord" or not job.channel_id:
            return
        self._latest[job.id] = status_line(job, event.status, event.place_in_line)
        self._editing.add(job.id)
        if job.id not in self._scheduled:
            self._scheduled.add(job.id)
            task = self.tasks.spawn(self._edit_soon(job), name=f"edit-{job.id}")
            self._edits.setdefault(job.id, set()).add(task)
            task.add_done_callback(lambda done: self._edits.get(job.id, set()).discard(done))

    def interval(self) -> tuple[float, bool]:
        """Seconds between two edits of one job's message, and whether the budget is short: it is when all the jobs
        editing now, each every SHORT_WHEN_S, would need more than the spare rate; then they share it."""
        needed = max(1, len(self._editing)) / self.bot.rest_budget.spare_rate(Priority.PROGRESS)
        short = needed > SHORT_WHEN_S
        return (max(EDIT_INTERVAL_S, needed) if short else EDIT_INTERVAL_S), short

    async def _edit_soon(self, job: Job) -> None:
        try:
            interval, short = self.interval()
            last = self._last_edit.get(job.id)
            if last is not None:
                wait = interval - (time.monotonic() - last)
            else:
                # A job's first edit goes at once while the budget has room; under load the first edits of many
                # jobs started together are spread over one interval instead of all queueing at once.
                wait = random.uniform(0.0, interval) if short else 0.0
            if wait > 0:
                await asyncio.sleep(wait)
        finally:
            self._scheduled.discard(job.id)
        text = self._latest.pop(job.id, None)
        if text is None or not self._news(text, self._shown.get(job.id), busy=short):
            return
        status_id = status_message_id(await self.bot.engine.posts_of(job.id))
        if status_id is None or not job.channel_id:
            return
        self._last_edit[job.id] = time.monotonic()
        channel = self.bot.get_partial_messageable(int(job.channel_id), guild_id=guild_of(job))
        with contextlib.suppress(discord.HTTPException), rest_priority(Priority.PROGRESS):
            await channel.get_partial_message(status_id).edit(content=text, view=status_view(job),
                                                              allowed_mentions=STATUS_MENTIONS)
            self._shown[job.id] = text

    @staticmethod
    def _news(text: str, shown: str | None, *, busy: bool) -> bool:
        """Whether an edit to `text` shows the member anything: never when the text is the same; while the budget is
        short, not when only the time counter at its end moved (the state, place in line or progress must)."""
        if shown is None:
            return True
        if busy:
            return without_elapsed(text) != without_elapsed(shown)
        return text != shown

    async def close(self) -> None:
        await self.tasks.close()


def without_elapsed(text: str) -> str:
    """A status line without its time counter ("… · 12 s"), which moves every second."""
    return text.rsplit(" · ", 1)[0]
