"""How to test a discord.py bot in-process with SimCord: a reference for Atelier's Discord layer.

The demo bot here is self-contained (a `commands.Bot` with one cog, a persistent `DynamicItem` button and a raw
reaction listener) and stands in for the real bot, so that each SimCord technique appears once. Every test asserts
what a member would notice.

1. /tryon: attachment + string options; defer (ephemeral, thinking); `attachment.read()` from SimCord's CDN; a public
   `channel.send` with a file and a nonce; the ephemeral ack edited in place.
2. The Retry button: a `DynamicItem` with template `atelier:retry:(?P<job>\\d+)`, clicked by the owner and by someone
   else, before and after a restart (`env.restart_bot(new_bot)`).
3. A 🔄 reaction from a member, handled in `on_raw_reaction_add`, while the bot's own 🔄 is ignored.
4. /imagine: a provider call on a real socket, declared with `env.external_wait(...)`; what happens without it.
5. The 15-minute token: `env.advance_time(16 * 60)`, then a follow-up fails (404/10015 here, 401/50027 on Discord)
   while `channel.send` still works.
6. The 3-second rule: /slowpoke sleeps before deferring.
7. The command tree: local definitions, what was synced, what a member's picker offers.

How SimCord waits (3.2.1), which decides how the bot must be written to be testable:
- Every actor verb (`slash`, `click`, `react`, ...) returns once the bot's work has *settled*: finished, or parked on
  something SimCord recognises (a sleep or timer beyond the watchdog, `wait_for`, a View timeout, an `ext.tasks`
  interval, or an explicit `env.external_wait(...)`). Anything else still pending after `settle_timeout` (5 s wall
  clock) raises TimeoutError "bot did not settle ... unknown wait".
- A bot's `asyncio.sleep(s)` runs on the virtual clock but has a wall-clock fallback: if `s` fits in the watchdog,
  SimCord really waits `s` seconds (and moves the virtual clock along); if not, it parks until `env.advance_time`.
- Inside `env.external_wait(...)` every timer the waiting task arms (aiohttp timeouts, sleeps) is virtual only.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import re
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import aiohttp
import discord
import pytest
import simcord
from discord import AppCommandOptionType, app_commands
from discord.ext import commands

from tests.discord.conftest import PNG_MAGIC, FakeImageApi, World, settle_until

T = TypeVar("T")

REDO = "🔄"
# Codes that mean "this interaction token can no longer be used": SimCord's expired token (404 Unknown Webhook),
# Discord's expired token (401 Invalid Webhook Token), and a missed 3 s window (404 Unknown Interaction).
TOKEN_GONE = {10015, 50027, 10062}
PROVIDER_TIMEOUT = aiohttp.ClientTimeout(total=120)

PERSON_PNG = PNG_MAGIC + b"pixels of a person"


# --------------------------------------------------------------------------------------------- the demo bot


class ExternalWait(Protocol):
    def __call__(self, awaitable: Awaitable[T], /, *, reason: str) -> Awaitable[T]: ...


async def passthrough(awaitable: Awaitable[T], /, *, reason: str) -> T:
    """The production default: just wait. Tests swap in `env.external_wait`, which has the same shape."""
    del reason
    return await awaitable


def render_tryon(person: bytes, garment: str) -> bytes:
    """The demo's stand-in for a try-on model: deterministic bytes the test can predict."""
    return b"TRYON " + garment.encode() + b" | " + person


@dataclass
class Job:
    id: int
    owner_id: int
    prompt: str
    message_id: int | None = None
    interaction: discord.Interaction | None = None
    attempts: int = 1


class JobBook:
    """Stands in for the job database: it outlives a bot object, which is what makes a restart meaningful."""

    def __init__(self) -> None:
        self.jobs: dict[int, Job] = {}
        self._ids = itertools.count(1)

    def new(self, owner_id: int, prompt: str) -> Job:
        job = Job(next(self._ids), owner_id, prompt)
        self.jobs[job.id] = job
        return job

    def by_message(self, message_id: int) -> Job | None:
        return next((job for job in self.jobs.values() if job.message_id == message_id), None)


class ImageApiClient:
    def __init__(self, url: str) -> None:
        self.url = url

    async def generate(self, prompt: str) -> bytes:
        async with (aiohttp.ClientSession(timeout=PROVIDER_TIMEOUT) as session,
                    session.post(f"{self.url}/v1/images", json={"prompt": prompt}) as response):
            response.raise_for_status()
            return await response.read()


class RetryButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"atelier:retry:(?P<job>\d+)"):
    """A Retry button whose state lives in its custom_id, so it works on any message, across restarts."""

    def __init__(self, job_id: int) -> None:
        super().__init__(discord.ui.Button(label="Retry", emoji=REDO, custom_id=f"atelier:retry:{job_id}"))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> RetryButton:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        book: JobBook = interaction.client.book  # type: ignore[attr-defined]
        job = book.jobs[self.job_id]
        if interaction.user.id != job.owner_id:
            await interaction.response.send_message(f"Only <@{job.owner_id}> can retry job {job.id}.", ephemeral=True)
            return
        job.attempts += 1
        await interaction.response.send_message(f"Retrying job {job.id} (attempt {job.attempts}).", ephemeral=True)


class Studio(commands.Cog):
    def __init__(self, bot: DemoBot) -> None:
        self.bot = bot

    @app_commands.command(name="tryon", description="Put a garment on the person in a photo")
    @app_commands.describe(person="A photo of the person", garment="What they should wear")
    async def tryon(self, interaction: discord.Interaction, person: discord.Attachment, garment: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)  # first thing: the 3 s clock is running
        source = await person.read()
        job = self.bot.book.new(interaction.user.id, garment)
        view = discord.ui.View(timeout=None)
        view.add_item(RetryButton(job.id))
        channel = interaction.channel
        assert isinstance(channel, discord.TextChannel)
        message = await channel.send(
            f"{interaction.user.mention} wearing {garment}",
            file=discord.File(io.BytesIO(render_tryon(source, garment)), filename=f"tryon-{job.id}.png"),
            view=view,
            nonce=f"atelier-job-{job.id}",  # discord.py 2.7 always adds enforce_nonce=True when a nonce is sent
        )
        job.message_id = message.id
        await message.add_reaction(REDO)  # a hint for members; its echo comes back through on_raw_reaction_add
        await interaction.edit_original_response(content=f"Done: job {job.id} is posted in {channel.mention}.")

    @app_commands.command(name="imagine", description="An image from a prompt")
    @app_commands.describe(prompt="What to draw")
    async def imagine(self, interaction: discord.Interaction, prompt: str) -> None:
        callback = await interaction.response.defer(thinking=True)  # public "Atelier is thinking..."
        thinking_id = callback.message_id if callback is not None else None
        job = self.bot.book.new(interaction.user.id, prompt)
        job.interaction = interaction
        wait = self.bot.external_wait
        await wait(self.bot.provider_slots.acquire(), reason="queued for a provider slot")
        try:
            image = await wait(self.bot.provider.generate(prompt), reason="image provider")
        except TimeoutError:
            await interaction.followup.send("The image service timed out; nothing was charged.")
            return
        finally:
            self.bot.provider_slots.release()
        await self.deliver(interaction, job, image, thinking_id)

    async def deliver(self, interaction: discord.Interaction, job: Job, image: bytes, thinking_id: int | None) -> None:
        content = f"Here is “{job.prompt}”."
        try:
            # The first follow-up after a thinking defer edits the thinking message in place.
            await interaction.followup.send(content, file=discord.File(io.BytesIO(image), filename=f"{job.id}.png"))
            return
        except discord.HTTPException as error:
            if error.code not in TOKEN_GONE:
                raise
        # The token is gone: post with the bot's own token, and resolve the (public) thinking message through the
        # channel endpoint, which does not need the token.
        channel = interaction.channel
        assert isinstance(channel, discord.TextChannel)
        message = await channel.send(f"{interaction.user.mention} {content}",
                                     file=discord.File(io.BytesIO(image), filename=f"{job.id}.png"))
        if thinking_id is not None:
            await channel.get_partial_message(thinking_id).edit(content=f"Delivered below: {message.jump_url}")

    @app_commands.command(name="slowpoke", description="Does slow work before deferring (the bug to avoid)")
    async def slowpoke(self, interaction: discord.Interaction) -> None:
        await asyncio.sleep(self.bot.think_s)
        await interaction.response.defer(ephemeral=True, thinking=True)
        await interaction.edit_original_response(content="Finally!")

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        if self.bot.user is None or payload.user_id == self.bot.user.id:
            return  # the bot's own reactions come back as gateway events too
        if str(payload.emoji) != REDO or (job := self.bot.book.by_message(payload.message_id)) is None:
            return
        channel = self.bot.get_partial_messageable(payload.channel_id, guild_id=payload.guild_id)
        await channel.send(f"<@{payload.user_id}> asked for another take of job {job.id}.")


class DemoBot(commands.Bot):
    def __init__(self, *, book: JobBook, provider_url: str) -> None:
        # A mention prefix keeps discord.py from warning about the message-content intent, which slash bots don't need.
        super().__init__(command_prefix=commands.when_mentioned, intents=discord.Intents.default())
        self.book = book
        self.provider = ImageApiClient(provider_url)
        self.provider_slots = asyncio.Semaphore(1)
        self.external_wait: ExternalWait = passthrough
        self.think_s = 0.0

    async def setup_hook(self) -> None:
        self.add_dynamic_items(RetryButton)
        await self.add_cog(Studio(self))
        await self.tree.sync()  # SimCord's strict_sync refuses commands that were never synced, as Discord would


# -------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture
def book() -> JobBook:
    return JobBook()


@pytest.fixture
def simcord_bot(book: JobBook, image_api: FakeImageApi) -> DemoBot:
    """The bot SimCord's `simcord_env` fixture starts (login, setup_hook, READY)."""
    return DemoBot(book=book, provider_url=image_api.url)


@pytest.fixture
def env(simcord_env: simcord.Env) -> simcord.Env:
    """`simcord_env` with the bot's waits on the outside world declared to SimCord."""
    simcord_env.bot.external_wait = simcord_env.external_wait  # type: ignore[attr-defined]
    return simcord_env


def callbacks(env: simcord.Env) -> list[Any]:
    """The interaction callbacks the bot sent (type 5 = deferred "thinking"; flags 64 = ephemeral)."""
    return [request.json for request in env.http_requests if request.path.endswith("/callback")]


async def post_tryon(world: World) -> discord.Message:
    """Alice runs /tryon; returns the public post with the Retry button."""
    await world.alice.slash(world.channel, "tryon", person=("me.png", PERSON_PNG), garment="a red scarf")
    post = world.channel.last_message  # without a viewer, history holds only public messages
    assert post is not None
    return post


# --------------------------------------------------------------------------------------------------- 1. /tryon


async def test_tryon_reads_the_attachment_and_posts_the_result_publicly(world: World, env: simcord.Env) -> None:
    result = await world.alice.slash(world.channel, "tryon", person=("me.png", PERSON_PNG), garment="a red scarf")

    # Alice's acknowledgement: deferred as ephemeral "thinking", then edited into a pointer; only she sees it.
    assert callbacks(env) == [{"type": 5, "data": {"flags": 64}}]
    assert result.acknowledged
    assert result.ephemeral
    assert result.response is not None
    assert result.response.content == f"Done: job 1 is posted in {world.channel.mention}."
    assert not result.deferred  # `deferred` is the *current* state: no longer "thinking" once edited
    assert result.response.id in world.ids_seen_by(world.alice)
    assert result.response.id not in world.ids_seen_by(world.bob)

    # The public post: sent with the bot token (not the interaction webhook), mentioning alice, with the rendered file.
    [post] = world.seen_by(world.bob)
    assert post.author.id == env.bot.user.id
    assert post.webhook_id is None
    assert post.content == f"{world.alice.mention} wearing a red scarf"
    [attachment] = post.attachments
    assert attachment.filename == "tryon-1.png"
    assert await attachment.read() == render_tryon(PERSON_PNG, "a red scarf")

    # discord.py sent the nonce with enforce_nonce; SimCord accepts both and ignores them (no dedup, no echo).
    [send] = [r for r in env.http_requests if r.method == "POST" and r.path == f"/channels/{world.channel.id}/messages"]
    assert send.json["nonce"] == "atelier-job-1"
    assert send.json["enforce_nonce"] is True
    assert post.nonce is None


# ------------------------------------------------------------------------------------------- 2. Retry button


async def test_retry_button_answers_the_owner_only_and_survives_a_restart(
        world: World, env: simcord.Env, book: JobBook, image_api: FakeImageApi) -> None:
    post = await post_tryon(world)

    refused = await world.bob.click(post, label="Retry")
    assert refused.ephemeral
    assert refused.response is not None
    assert refused.response.content == f"Only {world.alice.mention} can retry job 1."
    accepted = await world.alice.click(post, label="Retry")
    assert accepted.response is not None
    assert accepted.response.content == "Retrying job 1 (attempt 2)."
    assert accepted.response.id not in world.ids_seen_by(world.bob)

    # A restart: a fresh bot object (new process) over the same job store; SimCord's world (messages) persists.
    old_bot = env.bot
    new_bot = DemoBot(book=book, provider_url=image_api.url)
    new_bot.external_wait = env.external_wait
    await env.restart_bot(new_bot)  # logs in again, runs setup_hook (add_dynamic_items, sync), READY
    await old_bot.close()  # restart_bot does not close the old bot; a real process exit would
    assert env.bot is new_bot

    again = await world.alice.click(post, label="Retry")  # the old message, handled by the new bot
    assert again.response is not None
    assert again.response.content == "Retrying job 1 (attempt 3)."
    still_refused = await world.bob.click(post, label="Retry")
    assert still_refused.response is not None
    assert still_refused.response.content == f"Only {world.alice.mention} can retry job 1."


# ---------------------------------------------------------------------------------------------- 3. reactions


async def test_a_members_redo_reaction_is_handled_and_the_bots_own_is_ignored(world: World, env: simcord.Env) -> None:
    post = await post_tryon(world)
    bot_id = env.bot.user.id

    # The bot's own 🔄 came back as MESSAGE_REACTION_ADD with its user id, and nothing was posted for it.
    assert any("MESSAGE_REACTION_ADD" in line and f"user_id='{bot_id}'" in line
               for line in env.transcript().splitlines())
    assert [m.id for m in world.seen_by(world.bob)] == [post.id]

    await world.bob.react(post, REDO)

    *_, hint = world.seen_by(world.alice)
    assert hint.content == f"{world.bob.mention} asked for another take of job 1."
    [reaction] = world.channel.history()[0].reactions  # fresh copy: Message objects are snapshots
    assert (str(reaction.emoji), reaction.count) == (REDO, 2)


# ------------------------------------------------------------------------------------------ 4. external waits


async def test_a_provider_call_declared_as_an_external_wait(world: World, env: simcord.Env,
                                                            image_api: FakeImageApi) -> None:
    image_api.pause()

    result = await world.alice.slash(world.channel, "imagine", prompt="a lighthouse at dusk")

    # The verb returned while the provider still holds the request: everyone sees "Atelier is thinking...".
    assert image_api.prompts == ["a lighthouse at dusk"]
    assert result.deferred
    assert result.response is not None
    assert result.response.flags.loading
    assert not result.ephemeral
    assert result.response.id in world.ids_seen_by(world.bob)

    image_api.resume()
    await settle_until(env, lambda: not result.deferred, what="the image")

    assert result.response.content == "Here is “a lighthouse at dusk”."
    [image] = result.response.attachments
    assert await image.read() == FakeImageApi.image_for("a lighthouse at dusk")
    assert result.followups == []  # the first follow-up replaced the thinking message; it is not a new message


@pytest.mark.simcord(settle_timeout=0.3)
async def test_an_undeclared_slow_provider_trips_the_settle_watchdog(world: World, simcord_env: simcord.Env,
                                                                     image_api: FakeImageApi) -> None:
    # simcord_env, not env: the bot's waits are NOT declared. Default watchdog is 5 s; shrunk here to stay fast.
    image_api.delay_s = 0.6

    with pytest.raises(TimeoutError, match=r"bot did not settle(.|\n)*unknown wait"):
        await world.alice.slash(world.channel, "imagine", prompt="a slow boat")

    # Nothing was lost: the work is still tracked and completes once the provider answers.
    await simcord_env.settle(timeout=3.0)
    last = world.channel.last_message
    assert last is not None
    assert last.content == "Here is “a slow boat”."


async def test_timers_inside_an_external_wait_run_on_the_virtual_clock(world: World, env: simcord.Env,
                                                                       image_api: FakeImageApi) -> None:
    image_api.pause()  # the provider never answers
    result = await world.alice.slash(world.channel, "imagine", prompt="a hung job")

    # aiohttp's 120 s timeout was armed inside external_wait: only advance_time can fire it, and it does.
    await env.advance_time(120)

    assert result.response is not None
    assert result.response.content == "The image service timed out; nothing was charged."


# ----------------------------------------------------------------------------------- 5. the 15-minute token


async def test_after_15_minutes_follow_ups_fail_but_channel_send_works(world: World, env: simcord.Env) -> None:
    bot: DemoBot = env.bot  # type: ignore[assignment]
    await bot.provider_slots.acquire()  # another job holds the only provider slot, so /imagine waits in line

    result = await world.alice.slash(world.channel, "imagine", prompt="a slow sunset")
    assert result.deferred

    await env.advance_time(16 * 60)  # virtual; also moves discord.utils.utcnow(), so is_expired() agrees
    bot.provider_slots.release()
    await settle_until(env, lambda: len(world.channel.history()) == 2, what="the fallback post")

    # Alice still gets her image, from the bot token, and the thinking message points at it.
    thinking, post = world.seen_by(world.alice)
    assert post.content == f"{world.alice.mention} Here is “a slow sunset”."
    assert post.author.id == bot.user.id
    assert await post.attachments[0].read() == FakeImageApi.image_for("a slow sunset")
    assert result.response is not None
    assert thinking.id == result.response.id
    assert thinking.content == f"Delivered below: {post.jump_url}"
    assert not thinking.flags.loading

    # What the stored interaction answers now: SimCord says 404 Unknown Webhook (10015); Discord says 401 with
    # code 50027, a plain discord.HTTPException, so production code must check `.code`, not the exception class.
    interaction = bot.book.jobs[1].interaction
    assert interaction is not None
    assert interaction.is_expired()
    with pytest.raises(discord.NotFound) as followup_error:
        await interaction.followup.send("too late")
    assert (followup_error.value.status, followup_error.value.code) == (404, 10015)
    with pytest.raises(discord.NotFound) as edit_error:
        await interaction.edit_original_response(content="too late")
    assert edit_error.value.code == 10015

    still_here = await bot.get_partial_messageable(world.channel.id).send("channel.send needs no interaction token")
    assert world.channel.last_message is not None
    assert world.channel.last_message.id == still_here.id


# ---------------------------------------------------------------------------------------- 6. the 3-second rule


@pytest.mark.simcord(settle_timeout=1.0)
@pytest.mark.parametrize(("think_s", "answered"), [(2.5, True), (4.0, False)])
async def test_the_three_second_rule(world: World, simcord_env: simcord.Env, think_s: float, answered: bool) -> None:
    simcord_env.bot.think_s = think_s  # type: ignore[attr-defined]

    result = await world.alice.slash(world.channel, "slowpoke")
    # The sleep is longer than the (shrunk) watchdog, so SimCord parks it on the virtual clock and returns.
    assert not result.acknowledged

    await simcord_env.advance_time(think_s)

    if answered:
        assert result.response is not None
        assert result.response.content == "Finally!"
    else:
        # Too late: the member's client shows "The application did not respond"; the bot got 404 Unknown Interaction.
        assert not result.acknowledged
        assert result.response is None
        [error] = simcord_env.errors  # reading .errors acknowledges them, else teardown re-raises them
        assert isinstance(error, app_commands.CommandInvokeError)
        assert isinstance(error.original, discord.NotFound)
        assert error.original.code == 10062


# ------------------------------------------------------------------------------------------ 7. the command tree


async def test_the_command_tree_is_what_members_are_offered(world: World, simcord_env: simcord.Env) -> None:
    tree = simcord_env.bot.tree  # type: ignore[attr-defined]
    expected = {
        "tryon": [("person", AppCommandOptionType.attachment, True), ("garment", AppCommandOptionType.string, True)],
        "imagine": [("prompt", AppCommandOptionType.string, True)],
        "slowpoke": [],
    }

    local = {command.qualified_name: [(p.name, p.type, p.required) for p in command.parameters]
             for command in tree.walk_commands() if isinstance(command, app_commands.Command)}
    assert local == expected
    synced = {command.name: [(o.name, o.type, o.required) for o in command.options]
              for command in await tree.fetch_commands()}  # GET /applications/{id}/commands: what "Discord" holds
    assert synced == expected
    assert sorted(world.alice.available_commands(world.channel)) == sorted(expected)

    tryon = tree.get_command("tryon")
    assert tryon.get_parameter("person").description == "A photo of the person"
    assert tryon.to_dict(tree)["options"][0]["type"] == AppCommandOptionType.attachment.value
