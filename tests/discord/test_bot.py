"""The real Atelier bot in SimCord, with the job engine on a real SQLite file and the provider fakes on real sockets.

Each test asserts what members see: private acknowledgements and refusals, the public job message, the posted
image bytes, and what buttons and reactions do.
"""

from __future__ import annotations

import asyncio
import io
import sqlite3
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, TypeVar

import discord
import pytest
from PIL import Image
from simcord.backend import serializers as simcord_serializers

import bot.jobs.outbox
import cogs._delivery
from bot.app import App, open_app
from bot.discord_bot import AtelierBot
from bot.jobs import RunnerConfig
from bot.providers.http import HttpPolicy
from bot.settings import Settings
from bot.store.models import JobState, Origin
from tests.conftest import png_bytes
from tests.discord.conftest import World, settle_until
from tests.fakes.base import JobScript
from tests.fakes.fal import FakeFal
from tests.fakes.glam import FakeGlam

PHOTO = png_bytes(200, 160)
T = TypeVar("T")


@pytest.fixture
async def fal() -> AsyncIterator[FakeFal]:
    server = FakeFal(key="fal-bot-key")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def glam() -> AsyncIterator[FakeGlam]:
    server = FakeGlam(key="glam-bot-key")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def app(tmp_path: Path, fal: FakeFal, glam: FakeGlam, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[App]:
    for var in ("PIXAZO_API_KEY", "NOVITA_API_KEY", "FAL_KEY", "GLAM_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    # Idle loops must park beyond SimCord's watchdog; edits go out at once so tests see them.
    monkeypatch.setattr(bot.jobs.outbox, "DELIVERY_SCAN_S", 30.0)
    monkeypatch.setattr(cogs._delivery, "EDIT_INTERVAL_S", 0.0)
    settings = Settings(_env_file=None, database_url=f"sqlite:///{tmp_path}/atelier.db",  # type: ignore[call-arg]
                        fal_key=fal.key, fal_queue_url=fal.base_url, glam_api_key=glam.key,
                        glam_base_url=glam.base_url, poll_min_s=0.02, poll_max_s=0.1, http_backoff_base_s=0.01,
                        quota_daily=10, quota_concurrent=5)
    async with open_app(settings, deliverers={}, config=RunnerConfig(origins=frozenset({Origin.DISCORD})),
                        start=False) as built:
        yield built


class LateWait:
    """The runner's wait hook, aimed at SimCord's `external_wait` once the simulated Discord exists."""

    def __init__(self) -> None:
        self.target: Any = None

    def __call__(self, awaitable: Awaitable[T], /, *, reason: str) -> Awaitable[T]:
        assert self.target is not None, "a provider was called before SimCord started"
        return self.target(awaitable, reason=reason)  # type: ignore[no-any-return]


@pytest.fixture
def late_wait() -> LateWait:
    return LateWait()


@pytest.fixture
def simcord_bot(app: App, late_wait: LateWait) -> AtelierBot:
    app.runner.external_wait = late_wait
    return AtelierBot(app)


@pytest.fixture
async def atelier(world: World, late_wait: LateWait) -> World:
    """The world, with the bot's waits on providers declared to SimCord."""
    late_wait.target = world.env.external_wait
    return world


def public(world: World) -> list[discord.Message]:
    return world.channel.history()


def status_message(world: World, job_id: int) -> discord.Message | None:
    """The job's public progress message (it starts with the bold job title)."""
    return next((m for m in public(world) if m.content.startswith("**") and f"job #{job_id}**" in m.content), None)


def result_message(world: World, job_id: int) -> discord.Message | None:
    """The reply that delivers the job: it mentions the member and names the job."""
    return next((m for m in public(world) if not m.content.startswith("**") and f"job #{job_id}" in m.content), None)


async def wait_for_result(world: World, job_id: int) -> discord.Message:
    await settle_until(world.env, lambda: result_message(world, job_id) is not None, timeout=10,
                       what=f"the result of job #{job_id}")
    message = result_message(world, job_id)
    assert message is not None
    return message


async def test_imagine_acknowledges_privately_then_posts_progress_and_the_image(
        atelier: World, fal: FakeFal) -> None:
    world = atelier
    fal.script = JobScript(queue_polls=1, running_polls=1)
    result = await world.alice.slash(world.channel, "imagine", prompt="a red fox", seed=7)
    assert result.ephemeral and result.response is not None
    assert result.response.content.startswith("Started job #1")
    assert result.response.id not in world.ids_seen_by(world.bob)
    posted = await wait_for_result(world, 1)
    [attachment] = posted.attachments
    assert await attachment.read() == next(iter(fal.files.values()))
    assert world.alice.mention in posted.content and "seed 7" in posted.content and "fal" in posted.content
    status = status_message(world, 1)
    assert status is not None and "✅ done" in status.content
    assert posted.reference is not None and posted.reference.message_id == status.id
    job = await world.env.bot.app.store.get_job(1)  # type: ignore[attr-defined]
    assert job is not None and job.state is JobState.SUCCEEDED and job.message_id == str(posted.id)
    labels = [c.label for row in posted.components for c in row.children]  # type: ignore[union-attr]
    assert labels == ["Retry", "Vary", "Remix", "Delete"]


async def test_a_text_file_named_png_is_refused_privately_and_nothing_is_sent(
        atelier: World, fal: FakeFal) -> None:
    world = atelier
    result = await world.alice.slash(world.channel, "edit", image=("cat.png", b"just some text"), prompt="x")
    assert result.response is not None and "not an image" in result.response.content
    assert result.ephemeral and public(world) == [] and fal.requests == []


def buttons(message: discord.Message) -> list[str]:
    return [c.label or "" for row in message.components for c in row.children]  # type: ignore[union-attr]


async def test_tryon_sends_both_photos_and_the_mask_and_posts_glams_image(atelier: World, glam: FakeGlam) -> None:
    world = atelier
    result = await world.alice.slash(world.channel, "tryon", person=("me.png", PHOTO),
                                     garment=("shirt.png", png_bytes(120, 120)), mask="upper")
    assert result.response is not None and result.response.content.startswith("Started job #1")
    posted = await wait_for_result(world, 1)
    assert await posted.attachments[0].read() in glam.files.values()
    assert "mask upper" in posted.content
    assert buttons(posted) == ["Retry", "Remix", "Delete"]  # no seed, so no Vary
    assert len(glam.uploads) == 2


async def test_filter_with_a_glam_filter_and_unknown_names_refused(atelier: World, glam: FakeGlam) -> None:
    world = atelier
    unknown = await world.alice.slash(world.channel, "filter", image=("me.png", PHOTO), name="glitter")
    assert unknown.response is not None and "Unknown filter" in unknown.response.content
    assert public(world) == [] and glam.calls("POST", "/generate") == []
    await world.alice.slash(world.channel, "filter", image=("me.png", PHOTO), name="real_sunset")
    posted = await wait_for_result(world, 1)
    assert "filter **real\\_sunset**" in posted.content and posted.attachments  # markdown-escaped


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"image": ("empty.png", b""), "prompt": "x"}, "empty"),
    ({"image": ("huge.png", png_bytes(64, 64)), "prompt": "x" * 1001}, "1000"),
    ({"image": ("tiny.png", png_bytes(20, 20)), "prompt": "x"}, "at least 64"),
])
async def test_bad_edit_inputs_are_refused_privately(atelier: World, fal: FakeFal, kwargs: dict[str, Any],
                                                     message: str) -> None:
    world = atelier
    result = await world.alice.slash(world.channel, "edit", **kwargs)
    assert result.ephemeral and result.response is not None and message in result.response.content
    assert public(world) == [] and fal.requests == []
    assert await world.env.bot.app.store.list_jobs(None) == []  # type: ignore[attr-defined]


async def test_sixty_megapixels_is_refused_before_decoding(atelier: World, fal: FakeFal) -> None:
    world = atelier
    buf = io.BytesIO()
    Image.new("L", (10_000, 6_000)).save(buf, "PNG")
    result = await world.alice.slash(world.channel, "edit", image=("big.png", buf.getvalue()), prompt="x")
    assert result.response is not None and "60.0 megapixels" in result.response.content
    assert fal.requests == []


async def test_quota_exhaustion_is_private_and_names_the_reset(atelier: World, app: App, fal: FakeFal) -> None:
    world = atelier
    await app.store.set_limit(f"guild:{world.guild.id}", "member", str(world.alice.id), daily=2, concurrent=None)
    await world.alice.slash(world.channel, "imagine", prompt="one", count=2)
    await wait_for_result(world, 1)
    refused = await world.alice.slash(world.channel, "imagine", prompt="two")
    assert refused.response is not None and "used 2 of your 2" in refused.response.content
    assert "resets" in refused.response.content and refused.ephemeral
    quota = await world.alice.slash(world.channel, "quota")
    assert quota.response is not None and "**2** of **2**" in quota.response.content
    # Bob's quota is his own.
    ok = await world.bob.slash(world.channel, "imagine", prompt="three")
    assert ok.response is not None and ok.response.content.startswith("Started job #2")


async def test_retry_and_vary_by_button_for_the_owner_and_another_member(atelier: World, app: App) -> None:
    world = atelier
    await world.alice.slash(world.channel, "imagine", prompt="a fox", seed=42)
    first = await wait_for_result(world, 1)
    retry = await world.bob.click(first, label="Retry")
    assert retry.ephemeral and retry.response is not None and retry.response.content.startswith("Started job #2")
    vary = await world.alice.click(first, label="Vary")
    assert vary.response is not None and vary.response.content.startswith("Started job #3")
    await wait_for_result(world, 2)
    await wait_for_result(world, 3)
    job2, job3 = await app.store.get_job(2), await app.store.get_job(3)
    assert job2 is not None and job3 is not None
    assert job2.subject.user_id == str(world.bob.id) and job2.request["seed"] == 42
    assert job3.subject.user_id == str(world.alice.id) and job3.request["seed"] != 42
    bob_usage = await app.runner.usage(job2.subject)
    assert bob_usage.used_today == 1


async def test_reactions_retry_vary_mail_and_delete(atelier: World, app: App) -> None:
    world = atelier
    await world.alice.slash(world.channel, "imagine", prompt="a fox", seed=1)
    first = await wait_for_result(world, 1)
    await world.bob.react(first, "🔄")
    await wait_for_result(world, 2)
    await world.alice.react(first, "🎲")
    await wait_for_result(world, 3)
    job2, job3 = await app.store.get_job(2), await app.store.get_job(3)
    assert job2 is not None and job2.subject.user_id == str(world.bob.id) and job2.request["seed"] == 1
    assert job3 is not None and job3.request["seed"] != 1
    await world.bob.react(first, "❌")  # not the owner: nothing happens
    assert result_message(world, 1) is not None
    await world.alice.react(first, "❌")
    await world.env.settle()
    assert result_message(world, 1) is None


async def test_delete_button_is_for_the_owner_only(atelier: World) -> None:
    world = atelier
    await world.alice.slash(world.channel, "imagine", prompt="a fox")
    posted = await wait_for_result(world, 1)
    refused = await world.bob.click(posted, label="Delete")
    assert refused.response is not None and "Only the member who made this" in refused.response.content
    assert result_message(world, 1) is not None
    done = await world.alice.click(posted, label="Delete")
    assert done.response is not None and "Deleted" in done.response.content
    assert result_message(world, 1) is None


async def test_cancel_a_running_job(atelier: World, fal: FakeFal, app: App) -> None:
    world = atelier
    fal.hold_paths = ["/status"]  # the job sits at the provider until cancelled
    await world.alice.slash(world.channel, "imagine", prompt="slow")
    result = await world.alice.slash(world.channel, "cancel")
    assert result.response is not None and "Job #1 is cancelled" in result.response.content
    assert "Nothing was charged" in result.response.content
    failed = await wait_for_result(world, 1)
    assert "cancelled" in failed.content and buttons(failed) == ["Retry", "Vary", "Remix"]
    job = await app.store.get_job(1)
    assert job is not None and job.state is JobState.CANCELLED and job.refunded
    assert len(fal.calls("PUT", "/cancel")) == 1


async def test_a_failure_says_why_refunds_and_offers_retry(atelier: World, fal: FakeFal, app: App) -> None:
    world = atelier
    fal.script = JobScript(outcome="fail", fail_reason="Content policy violation")
    await world.alice.slash(world.channel, "imagine", prompt="x")
    failed = await wait_for_result(world, 1)
    assert "Content policy violation" in failed.content and "Nothing was charged" in failed.content
    assert "Retry" in buttons(failed)
    fal.script = JobScript()
    again = await world.alice.click(failed, label="Retry")
    assert again.response is not None and again.response.content.startswith("Started job #2")
    assert (await wait_for_result(world, 2)).attachments


async def test_a_job_that_outlives_the_interaction_token_is_still_delivered(
        atelier: World, fal: FakeFal, app: App) -> None:
    world = atelier
    app.settings.job_deadline_s = 3600.0
    http = app.providers.get("fal").http
    assert http is not None
    http.policy = HttpPolicy(timeout_s=3600.0)  # the held poll must outlast the 16 virtual minutes
    fal.hold_paths = ["/status"]
    await world.alice.slash(world.channel, "imagine", prompt="slow")
    for _ in range(16):  # a minute at a time, so the lease heartbeats and polls settle between steps
        await world.env.advance_time(60)
    # The interaction token is now dead: anything still using it would fail.
    fal.hold_paths = []
    fal.release.set()
    posted = await wait_for_result(world, 1)
    assert posted.attachments and world.alice.mention in posted.content
    late_webhook_calls = [r for r in world.env.http_requests if "/webhooks/" in r.path and r.method != "PATCH"]
    assert late_webhook_calls == []


async def test_nsfw_results_are_withheld_outside_age_restricted_channels(atelier: World, fal: FakeFal) -> None:
    world = atelier
    fal.script = JobScript(nsfw=True)
    await world.alice.slash(world.channel, "imagine", prompt="x")
    posted = await wait_for_result(world, 1)
    assert "NSFW" in posted.content and posted.attachments == []


async def test_the_command_tree_has_exactly_the_contracted_commands(atelier: World) -> None:
    tree = world_tree(atelier)
    assert tree == {
        "tryon": ["garment", "person", "mask", "garment2"],  # person is optional (the saved photo): listed after
        "filter": ["image", "name"],
        "edit": ["image", "prompt", "image2", "image3", "image4", "size", "seed", "count"],
        "imagine": ["prompt", "size", "seed", "count"],
        "jobs": [], "quota": [], "cancel": ["job"], "show": ["job"], "forget": [],
        "settings": ["size", "count", "private", "photo", "clear"],
        "Apps → Edit this image": ["message"], "Apps → Apply a filter": ["message"],
        "Apps → Try on: use as garment": ["message"], "Apps → Try on: use as person": ["message"],
        "atelier": ["channels", "block", "blocklist", "auditlog", "limits", "allowance", "command", "providers",
                    "cooldown", "usage", "budget"],
    }


def world_tree(world: World) -> dict[str, list[str]]:
    bot_ = world.env.bot
    result: dict[str, list[str]] = {}
    for command in bot_.tree.get_commands():
        if isinstance(command, discord.app_commands.ContextMenu):
            result[f"Apps → {command.name}"] = [command.type.name]
        elif isinstance(command, discord.app_commands.Group):
            result[command.name] = [c.name for c in command.commands]
        else:
            result[command.name] = [p.name for p in command.parameters]  # type: ignore[union-attr]
    return result


async def test_buttons_keep_working_after_a_restart(atelier: World, app: App, late_wait: LateWait) -> None:
    world = atelier
    await world.alice.slash(world.channel, "imagine", prompt="a fox")
    first = await wait_for_result(world, 1)
    # A restart is a new process: a new engine on the same database, and a new bot object.
    old = world.env.bot
    await app.runner.stop()
    async with open_app(app.settings, deliverers={}, config=RunnerConfig(origins=frozenset({Origin.DISCORD})),
                        start=False) as fresh:
        fresh.runner.external_wait = late_wait
        new = AtelierBot(fresh)
        await world.env.restart_bot(new)
        await old.close()
        again = await world.bob.click(first, label="Retry")
        assert again.response is not None and again.response.content.startswith("Started job #2")
        assert (await wait_for_result(world, 2)).attachments
        await fresh.runner.stop()


@pytest.fixture
def admin(atelier: World) -> Any:
    role = atelier.guild.create_role("mods", permissions=discord.Permissions(manage_guild=True))
    return atelier.guild.add_member(atelier.env.create_user("carol"), roles=[role])


async def test_admin_commands_are_only_offered_to_managers(atelier: World, admin: Any) -> None:
    assert "atelier limits" in admin.available_commands(atelier.channel)
    assert not any(c.startswith("atelier") for c in atelier.alice.available_commands(atelier.channel))


async def test_admin_limits_and_allowances_apply_to_members(atelier: World, admin: Any, app: App) -> None:
    world = atelier
    result = await admin.slash(world.channel, "atelier limits", daily=1)
    assert result.ephemeral and result.response is not None and "1 images a day" in result.response.content
    await world.alice.slash(world.channel, "imagine", prompt="one")
    refused = await world.alice.slash(world.channel, "imagine", prompt="two")
    assert refused.response is not None and "used 1 of your 1" in refused.response.content
    await admin.slash(world.channel, "atelier allowance", target=world.alice, daily=3)
    again = await world.alice.slash(world.channel, "imagine", prompt="two")
    assert again.response is not None and again.response.content.startswith("Started job #2")
    usage = await admin.slash(world.channel, "atelier usage")
    assert usage.response is not None and f"<@{world.alice.id}>: 2 image(s)" in usage.response.content


async def test_admin_can_turn_a_command_off_and_set_a_cooldown(atelier: World, admin: Any, fal: FakeFal) -> None:
    world = atelier
    await admin.slash(world.channel, "atelier command", name="imagine", enabled=False)
    off = await world.alice.slash(world.channel, "imagine", prompt="x")
    assert off.response is not None and "turned off in this server" in off.response.content
    await admin.slash(world.channel, "atelier command", name="imagine", enabled=True)
    await admin.slash(world.channel, "atelier cooldown", seconds=600)
    first = await world.alice.slash(world.channel, "imagine", prompt="x")
    assert first.response is not None and first.response.content.startswith("Started job #1")
    second = await world.alice.slash(world.channel, "imagine", prompt="y")
    assert second.response is not None and "Slow down" in second.response.content
    other = await world.bob.slash(world.channel, "imagine", prompt="z")
    assert other.response is not None and other.response.content.startswith("Started job #2")


async def test_admin_provider_order_is_validated_and_used(atelier: World, admin: Any, app: App) -> None:
    world = atelier
    bad = await admin.slash(world.channel, "atelier providers", operation="filter", order="dalle,glam")
    assert bad.response is not None and "unknown: dalle" in bad.response.content
    ok = await admin.slash(world.channel, "atelier providers", operation="filter", order="local,glam")
    assert ok.response is not None and "filter now runs on: local, glam" in ok.response.content
    await world.alice.slash(world.channel, "filter", image=("me.png", PHOTO), name="noir")
    await wait_for_result(world, 1)
    job = await app.store.get_job(1)
    assert job is not None and job.provider == "local"


async def test_jobs_lists_your_recent_jobs_privately(atelier: World) -> None:
    world = atelier
    await world.alice.slash(world.channel, "imagine", prompt="a fox")
    await wait_for_result(world, 1)
    listing = await world.alice.slash(world.channel, "jobs")
    assert listing.ephemeral and listing.response is not None
    assert "**#1** Imagine · fal · succeeded" in listing.response.content
    empty = await world.bob.slash(world.channel, "jobs")
    assert empty.response is not None and "no jobs" in empty.response.content


async def test_no_permission_to_post_falls_back_to_dm_and_the_job_stays_in_jobs(atelier: World, app: App) -> None:
    world = atelier
    world.env.inject_error("POST", f"/channels/{world.channel.id}/messages", status=403, code=50013,
                           message="Missing Permissions", times=None)
    result = await world.alice.slash(world.channel, "imagine", prompt="a fox")
    assert result.response is not None and result.response.content.startswith("Started job #1")

    def dm_arrived() -> bool:
        return any(m.attachments for m in world.alice.user.dm_channel.history())

    await settle_until(world.env, dm_arrived, timeout=10, what="the result by DM")
    job = await app.store.get_job(1)
    assert job is not None and job.state is JobState.SUCCEEDED
    assert await app.store.is_delivered(1, "discord")


def test_results_too_large_for_the_guild_are_re_encoded_to_fit() -> None:
    from cogs._render import fit

    buf = io.BytesIO()
    Image.effect_noise((800, 800), 100).convert("RGB").save(buf, "PNG")
    data, mime = fit(buf.getvalue(), "image/png", 200_000)
    assert len(buf.getvalue()) > 200_000 >= len(data) and mime == "image/jpeg"
    with Image.open(io.BytesIO(data)) as img:
        img.load()


async def test_a_provider_rejecting_its_key_falls_back_to_the_next_in_order(atelier: World, glam: FakeGlam,
                                                                            app: App) -> None:
    world = atelier
    glam.key = "rotated"  # Atelier's Glam key is now rejected
    await world.alice.slash(world.channel, "filter", image=("me.png", PHOTO), name="sepia")
    posted = await wait_for_result(world, 1)
    job = await app.store.get_job(1)
    assert job is not None and job.provider == "local" and posted.attachments


async def test_progress_is_edited_into_the_public_message(atelier: World, fal: FakeFal) -> None:
    world = atelier
    fal.script = JobScript(queue_polls=2, running_polls=2, queue_position=3)
    await world.alice.slash(world.channel, "imagine", prompt="a fox")
    await wait_for_result(world, 1)
    status = status_message(world, 1)
    assert status is not None
    edits = [r.json["content"] for r in world.env.http_requests
             if r.method == "PATCH" and r.path.endswith(f"/messages/{status.id}")]
    assert any("queued at fal — position" in e for e in edits)
    assert any("running at fal" in e for e in edits)
    assert "✅ done" in edits[-1]


async def test_mail_reaction_sends_the_images_by_dm(atelier: World, fal: FakeFal) -> None:
    world = atelier
    await world.alice.slash(world.channel, "imagine", prompt="a fox")
    posted = await wait_for_result(world, 1)
    await world.bob.react(posted, "✉️")
    await settle_until(world.env, lambda: any(m.attachments for m in world.bob.user.dm_channel.history()),
                       what="the DM")
    [dm] = [m for m in world.bob.user.dm_channel.history() if m.attachments]
    assert await dm.attachments[0].read() == await posted.attachments[0].read()


async def test_nsfw_results_are_spoilered_in_age_restricted_channels(atelier: World, fal: FakeFal,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    world = atelier
    adult = world.guild.create_text_channel("after-dark")
    # SimCord 3.2.1 cannot create age-restricted channels; mark it so where Discord says it: in the channel object
    # GET /channels/{id} answers (the delivery asks Discord, not the gateway's cache).
    real_payload = simcord_serializers.channel_payload

    def payload(backend: Any, channel: Any) -> Any:
        data = dict(real_payload(backend, channel))
        if channel.id == adult.id:
            data["nsfw"] = True
        return data

    monkeypatch.setattr(simcord_serializers, "channel_payload", payload)
    fal.script = JobScript(nsfw=True)
    await world.alice.slash(adult, "imagine", prompt="x")

    def posted() -> discord.Message | None:
        return next((m for m in adult.history() if m.attachments), None)

    await settle_until(world.env, lambda: posted() is not None, what="the spoilered result")
    message = posted()
    assert message is not None and message.attachments[0].is_spoiler()


async def test_the_daily_quota_resets_at_midnight_utc(atelier: World, app: App) -> None:
    from datetime import timedelta

    world = atelier
    await app.store.set_limit(f"guild:{world.guild.id}", "member", str(world.alice.id), daily=1, concurrent=None)
    await world.alice.slash(world.channel, "imagine", prompt="one")
    await wait_for_result(world, 1)
    refused = await world.alice.slash(world.channel, "imagine", prompt="two")
    assert refused.response is not None and "resets" in refused.response.content
    real = app.runner.clock
    app.runner.clock = lambda: real() + timedelta(days=1)  # the next UTC day
    quota = await world.alice.slash(world.channel, "quota")
    assert quota.response is not None and "**0** of **1**" in quota.response.content
    again = await world.alice.slash(world.channel, "imagine", prompt="two")
    assert again.response is not None and again.response.content.startswith("Started job #2")


async def test_a_job_that_finishes_while_the_bot_is_down_is_delivered_once_after_restart(
        atelier: World, app: App, fal: FakeFal, late_wait: LateWait) -> None:
    world = atelier
    fal.hold_paths = ["/status"]
    await world.alice.slash(world.channel, "imagine", prompt="a fox")
    old = world.env.bot
    await app.runner.stop()  # the process goes down with the job at the provider
    fal.hold_paths = []
    fal.release.set()
    async with open_app(app.settings, deliverers={}, config=RunnerConfig(origins=frozenset({Origin.DISCORD})),
                        start=False) as fresh:
        fresh.runner.external_wait = late_wait
        await world.env.restart_bot(AtelierBot(fresh))
        await old.close()
        posted = await wait_for_result(world, 1)
        assert posted.attachments
        await world.env.settle()
        results = [m for m in public(world) if not m.content.startswith("**") and "job #1" in m.content]
        assert len(results) == 1
        assert len(fal.calls("POST")) == 1  # polled again, never resubmitted
        await fresh.runner.stop()


async def test_no_channel_and_closed_dms_keep_the_job_visible_in_jobs(atelier: World, app: App) -> None:
    world = atelier
    world.env.inject_error("POST", "/channels/*/messages", status=403, code=50013, message="Missing Permissions",
                           times=None)
    result = await world.alice.slash(world.channel, "imagine", prompt="a fox")
    assert result.response is not None and result.response.content.startswith("Started job #1")

    async def noted() -> bool:
        return any(p.note for p in await app.store.posts_of(1))

    deadline = asyncio.get_running_loop().time() + 10
    while not await noted():
        assert asyncio.get_running_loop().time() < deadline
        await world.env.settle()
        await asyncio.sleep(0.02)
    listing = await world.alice.slash(world.channel, "jobs")
    assert listing.response is not None and "succeeded" in listing.response.content
    assert "DMs closed" in listing.response.content
    quota = await world.alice.slash(world.channel, "quota")  # the member got no image, so it cost nothing
    assert quota.response is not None and "You have used **0** of" in quota.response.content


async def test_a_result_posted_just_before_a_crash_is_not_posted_again(atelier: World, app: App) -> None:
    world = atelier
    await world.alice.slash(world.channel, "imagine", prompt="a fox")
    posted = await wait_for_result(world, 1)
    # As if the process died after posting but before recording the message and marking the delivery done.
    job = await app.store.get_job(1)
    assert job is not None
    with sqlite3.connect(app.store.path) as db:  # type: ignore[attr-defined]
        db.execute("UPDATE jobs SET message_id = NULL WHERE id = 1")
        db.execute("UPDATE discord_posts SET message_id = NULL, posted_at = NULL WHERE job_id = 1 AND kind = 'result'")
    delivery = world.env.bot.get_cog("Results").delivery  # type: ignore[union-attr]
    await delivery.deliver(await app.store.get_job(1))
    results = [m for m in public(world) if not m.content.startswith("**") and "job #1" in m.content]
    assert [m.id for m in results] == [posted.id]
    again = await app.store.get_job(1)
    assert again is not None and again.message_id == str(posted.id)


async def test_a_button_whose_action_fails_answers_privately_with_a_reference_that_is_in_the_log(
        atelier: World, app: App, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    world = atelier
    await world.alice.slash(world.channel, "imagine", prompt="a fox")
    posted = await wait_for_result(world, 1)

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the runner fell over")

    monkeypatch.setattr(app.runner, "rerun", broken)
    clicked = await world.bob.click(posted, label="Retry")
    assert clicked.response is not None and clicked.response.flags.ephemeral
    reference = clicked.response.content.split("reference `")[1][:6]
    assert "RuntimeError" not in clicked.response.content
    [record] = [r for r in caplog.records if reference in r.getMessage()]
    assert record.exc_info is not None and "the runner fell over" in str(record.exc_info[1])
    assert "the retry button" in record.getMessage()
