"""/show against SimCord: a finished job's result posted again where the member asks, with working buttons, as one
more post of the same job that charges nothing; someone else's job is refused privately."""

# ruff: noqa: F811 - the fixtures are imported from test_bot and named again as parameters
from __future__ import annotations

from typing import Any

from bot.app import App
from bot.store.models import PostKind
from tests.discord.conftest import World, settle_until
from tests.discord.test_bot import (  # noqa: F401 - fixtures
    admin,
    app,
    atelier,
    buttons,
    fal,
    glam,
    late_wait,
    public,
    simcord_bot,
    wait_for_result,
)
from tests.fakes.fal import FakeFal


async def test_the_owner_shows_a_result_again_in_another_channel_for_free(atelier: World, app: App,
                                                                          fal: FakeFal) -> None:
    world = atelier
    await world.alice.slash(world.channel, "imagine", prompt="a red fox", seed=3)
    first = await wait_for_result(world, 1)
    gallery = world.guild.create_text_channel("gallery")
    used = (await app.runner.usage((await app.store.get_job(1)).subject)).used_today  # type: ignore[union-attr]

    shown = await world.alice.slash(gallery, "show", job=1)
    assert shown.ephemeral and shown.response is not None and "Posted job #1 again" in shown.response.content
    [again] = [m for m in gallery.history() if "job #1" in m.content]
    assert await again.attachments[0].read() == await first.attachments[0].read()
    assert buttons(again) == ["Retry", "Vary", "Remix", "Delete"]
    assert len(fal.jobs) == 1, "nothing is sent to a provider"
    job = await app.store.get_job(1)
    assert job is not None and (await app.runner.usage(job.subject)).used_today == used
    results = [p for p in await app.store.posts_of(1) if p.kind is PostKind.RESULT]
    assert len(results) == 2 and results[0].nonce != results[1].nonce
    assert job.message_id == str(again.id)  # the job now lives where it was shown

    # Its buttons work: Bob retries from the new post, in the gallery.
    retry = await world.bob.click(again, label="Retry")
    assert retry.response is not None and retry.response.content.startswith("Started job #2")
    await settle_until(world.env, lambda: any("is ready · job #2" in m.content for m in gallery.history()),
                       timeout=10, what="job #2 in the gallery")


async def test_another_members_job_is_refused_privately_but_a_manager_may_show_it(
        atelier: World, app: App, admin: Any) -> None:
    world = atelier
    await world.alice.slash(world.channel, "imagine", prompt="a red fox")
    await wait_for_result(world, 1)
    before = len(public(world))
    refused = await world.bob.slash(world.channel, "show", job=1)
    assert refused.ephemeral and refused.response is not None
    assert "You have no job #1 in this server" in refused.response.content
    missing = await world.bob.slash(world.channel, "show", job=99)
    assert missing.response is not None and missing.response.content.replace("#99", "#1") == refused.response.content
    assert len(public(world)) == before
    by_admin = await admin.slash(world.channel, "show", job=1)
    assert by_admin.response is not None and "Posted job #1 again" in by_admin.response.content
    assert len(public(world)) == before + 1


async def test_a_job_still_running_is_not_shown(atelier: World, fal: FakeFal) -> None:
    world = atelier
    fal.hold_paths = ["/status"]
    await world.alice.slash(world.channel, "imagine", prompt="slow")
    refused = await world.alice.slash(world.channel, "show", job=1)
    assert refused.ephemeral and refused.response is not None and "still" in refused.response.content
    assert not any("is ready" in m.content for m in public(world))
    fal.hold_paths = []
