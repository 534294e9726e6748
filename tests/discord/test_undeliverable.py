"""A result Discord keeps refusing is given up after DELIVERY_MAX_ATTEMPTS and shown as undeliverable in /jobs."""

from __future__ import annotations

import asyncio

from bot.app import App
from tests.discord.conftest import World
from tests.discord.test_bot import app, atelier, fal, glam, late_wait, simcord_bot  # noqa: F401 - fixtures


async def test_a_result_discord_keeps_refusing_is_marked_undeliverable_in_jobs(atelier: World, app: App) -> None:  # noqa: F811
    world = atelier
    app.settings.delivery_max_attempts = 1
    # Neither Forbidden nor NotFound, so no DM fallback: the delivery itself fails.
    world.env.inject_error("POST", "/channels/*/messages", status=400, code=50035, message="Invalid Form Body",
                           times=None)
    result = await world.alice.slash(world.channel, "imagine", prompt="a fox")
    assert result.response is not None and result.response.content.startswith("Started job #1")

    deadline = asyncio.get_running_loop().time() + 10
    while not ((job := await app.store.get_job(1)) and job.undeliverable):
        assert asyncio.get_running_loop().time() < deadline, "the delivery was not given up"
        await world.env.settle()
        await asyncio.sleep(0.02)
    assert job.refunded
    listing = await world.alice.slash(world.channel, "jobs")
    assert listing.response is not None and "succeeded" in listing.response.content
    assert "undeliverable" in listing.response.content

