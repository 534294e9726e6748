"""The real Atelier bot in SimCord, with the job engine on a real SQLite file and the provider fakes on real sockets.

Each test asserts what members see: private acknowledgements and refusals, the public job message, the posted
image bytes, and what buttons and reactions do.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, TypeVar

import discord
import pytest
import simcord
from PIL import Image

import bot.runner
import cogs._delivery
from bot.app import App, open_app
from bot.discord_bot import AtelierBot
from bot.runner import RunnerConfig
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
    monkeypatch.setattr(bot.runner, "DELIVERY_SCAN_S", 30.0)
    monkeypatch.setattr(cogs._delivery, "EDIT_INTERVAL_S", 0.0)
    settings = Settings(_env_file=None, database_url=f"sqlite:///{tmp_path}/atelier.db",  # type: ignore[call-arg]
                        fal_key=fal.key, fal_queue_url=fal.base_url, glam_api_key=glam.key,
                        glam_base_url=glam.base_url, poll_initial_s=0.02, poll_max_s=0.1, http_backoff_base_s=0.01,
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
    assert labels == ["Retry", "Vary", "Delete"]


async def test_a_text_file_named_png_is_refused_privately_and_nothing_is_sent(
        atelier: World, fal: FakeFal) -> None:
    world = atelier
    result = await world.alice.slash(world.channel, "edit", image=("cat.png", b"just some text"), prompt="x")
    assert result.response is not None and "not an image" in result.response.content
    assert result.ephemeral and public(world) == [] and fal.requests == []
