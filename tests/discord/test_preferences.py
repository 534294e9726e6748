"""/settings against SimCord: each preference applied where the member says nothing else, overridden where they do,
and shown back to them privately."""

# ruff: noqa: F811 - the fixtures are imported from test_bot and named again as parameters
from __future__ import annotations

import hashlib
from typing import Any

from bot.app import App
from tests.conftest import png_bytes
from tests.discord.conftest import World, settle_until
from tests.discord.test_bot import (  # noqa: F401 - fixtures
    PHOTO,
    app,
    atelier,
    fal,
    glam,
    late_wait,
    public,
    result_message,
    simcord_bot,
    status_message,
    wait_for_result,
)
from tests.fakes.fal import FakeFal
from tests.fakes.glam import FakeGlam

ME = png_bytes(230, 180, (120, 40, 200))


def last_body(fal: FakeFal) -> dict[str, Any]:
    return list(fal.jobs.values())[-1].body["input"]  # type: ignore[no-any-return]


async def test_size_and_count_apply_unless_the_command_says_otherwise(atelier: World, fal: FakeFal) -> None:
    world = atelier
    saved = await world.alice.slash(world.channel, "settings", size="landscape_16_9", count=2)
    assert saved.ephemeral and saved.response is not None
    assert "Landscape 16:9" in saved.response.content and "Images per job: 2" in saved.response.content

    await world.alice.slash(world.channel, "imagine", prompt="a harbour")
    posted = await wait_for_result(world, 1)
    assert len(posted.attachments) == 2
    assert last_body(fal)["image_size"] == "landscape_16_9" and last_body(fal)["num_images"] == 2

    await world.alice.slash(world.channel, "imagine", prompt="a harbour", size="square", count=1)
    await wait_for_result(world, 2)
    assert last_body(fal)["image_size"] == "square" and last_body(fal)["num_images"] == 1

    await world.bob.slash(world.channel, "imagine", prompt="a harbour")  # Bob's defaults are his own
    await wait_for_result(world, 3)
    assert "image_size" not in last_body(fal) or last_body(fal)["image_size"] == "square_hd"
    assert last_body(fal).get("num_images", 1) == 1

    cleared = await world.alice.slash(world.channel, "settings", clear="everything")
    assert cleared.response is not None and "the provider's default" in cleared.response.content
    assert "Images per job: 1" in cleared.response.content


async def test_private_delivery_sends_results_by_dm_and_never_to_the_channel(atelier: World, app: App) -> None:
    world = atelier
    await world.alice.slash(world.channel, "settings", private=True)
    started = await world.alice.slash(world.channel, "imagine", prompt="a secret garden")
    assert started.response is not None and started.response.content.startswith("Started job #1")
    await settle_until(world.env, lambda: any(m.attachments for m in world.alice.user.dm_channel.history()),
                       timeout=10, what="the result by DM")
    await settle_until(world.env, lambda: "✅ done" in getattr(status_message(world, 1), "content", ""),
                       what="the status message finished")
    assert result_message(world, 1) is None, "the result is not posted in the channel"
    assert not any(m.attachments for m in public(world))
    job = await app.store.get_job(1)
    assert job is not None and (await app.runner.usage(job.subject)).used_today == 1

    # The preference is Alice's alone: Bob's result is posted in the channel.
    await world.bob.slash(world.channel, "imagine", prompt="an open garden")
    assert (await wait_for_result(world, 2)).attachments


async def test_my_photo_is_the_person_in_a_tryon_without_one(atelier: World, glam: FakeGlam) -> None:
    world = atelier
    refused = await world.alice.slash(world.channel, "tryon", garment=("shirt.png", png_bytes(120, 120)))
    assert refused.ephemeral and refused.response is not None
    assert "save yours once with `/settings photo:`" in refused.response.content and glam.uploads == []

    bad = await world.alice.slash(world.channel, "settings", photo=("me.png", b"not an image"))
    assert bad.response is not None and "not an image" in bad.response.content
    saved = await world.alice.slash(world.channel, "settings", photo=("me.png", ME))
    assert saved.response is not None and "My photo (for try-on): saved (230x180)" in saved.response.content

    await world.alice.slash(world.channel, "tryon", garment=("shirt.png", png_bytes(120, 120)))
    await wait_for_result(world, 1)
    assert ME in [u.data for u in glam.uploads], "the saved photo went to Glam as the person"

    other = png_bytes(210, 170, (10, 200, 10))  # a person attached wins over the saved photo
    await world.alice.slash(world.channel, "tryon", garment=("shirt.png", png_bytes(120, 120)),
                            person=("friend.png", other))
    await wait_for_result(world, 2)
    assert other in [u.data for u in glam.uploads[2:]] and ME not in [u.data for u in glam.uploads[2:]]


async def test_a_replaced_or_cleared_photo_is_deleted_unless_a_job_uses_it(atelier: World, glam: FakeGlam,
                                                                            app: App) -> None:
    world = atelier
    first, second = png_bytes(200, 200, (1, 2, 3)), png_bytes(210, 200, (4, 5, 6))
    path = lambda data: app.blobs.path_for(hashlib.sha256(data).hexdigest())  # noqa: E731
    await world.alice.slash(world.channel, "settings", photo=("one.png", first))
    await world.alice.slash(world.channel, "settings", photo=("two.png", second))
    assert not path(first).exists() and path(second).exists(), "the replaced photo is gone"
    await world.alice.slash(world.channel, "tryon", garment=("shirt.png", png_bytes(120, 120)))  # uses it
    await wait_for_result(world, 1)
    await world.alice.slash(world.channel, "settings", clear="photo")
    assert path(second).exists(), "job #1 still uses it as its person photo"
