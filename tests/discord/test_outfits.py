"""Outfits against SimCord and the Glam fake: `/tryon` with a second garment runs two try-on jobs at the provider,
the second trying its garment on the first's result; one charge per image made, nothing when the first step fails,
and one entry in /jobs."""

# ruff: noqa: F811 - the fixtures are imported from test_bot and named again as parameters
from __future__ import annotations

from bot.app import App
from bot.store.models import Subject
from tests.conftest import png_bytes
from tests.discord.conftest import World
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
    wait_for_result,
)
from tests.fakes.base import JobScript
from tests.fakes.glam import FakeGlam

SHIRT = png_bytes(120, 140, (230, 230, 30))
TROUSERS = png_bytes(110, 160, (30, 30, 120))


def uploaded(glam: FakeGlam, url: str) -> bytes:
    return glam.files[url.rsplit("/", 1)[-1]]


async def test_an_outfit_is_two_chained_tryons_charged_per_image(atelier: World, glam: FakeGlam, app: App) -> None:
    world = atelier
    glam.distinct_outputs = True
    started = await world.alice.slash(world.channel, "tryon", person=("me.png", PHOTO), garment=("shirt.png", SHIRT),
                                      garment2=("trousers.png", TROUSERS))
    assert started.response is not None and started.response.content.startswith("Started job #1")
    posted = await wait_for_result(world, 2)
    assert "mask lower" in posted.content and posted.attachments
    assert result_message(world, 1) is None, "the first step's image is not posted: it is the second's input"

    first, second = [job for job in glam.jobs.values() if job.operation == "tryon"]
    assert uploaded(glam, first.body["media_url"]) == PHOTO and uploaded(glam, first.body["garment_url"]) == SHIRT
    assert first.body["mask_type"] == "upper" and second.body["mask_type"] == "lower"
    step_one_output = glam.files[first.outputs[0]]
    assert uploaded(glam, second.body["media_url"]) == step_one_output, "step 2 tries on step 1's result"
    assert uploaded(glam, second.body["garment_url"]) == TROUSERS
    assert await posted.attachments[0].read() == glam.files[second.outputs[0]]

    job1, job2 = await app.store.get_job(1), await app.store.get_job(2)
    assert job1 is not None and job2 is not None and job2.parent_job_id == 1
    assert (await app.runner.usage(job1.subject)).used_today == 2, "one charge per image made"
    listing = await world.alice.slash(world.channel, "jobs")
    assert listing.response is not None
    lines = listing.response.content.splitlines()
    assert len(lines) == 1 and "**#2** Outfit" in lines[0] and "succeeded" in lines[0]


async def test_an_outfit_whose_first_step_fails_is_refunded_and_goes_no_further(atelier: World, glam: FakeGlam,
                                                                               app: App) -> None:
    world = atelier
    glam.scripts = [JobScript(outcome="fail", fail_reason="no person found")]
    await world.alice.slash(world.channel, "tryon", person=("me.png", PHOTO), garment=("shirt.png", SHIRT),
                            garment2=("trousers.png", TROUSERS))
    failed = await wait_for_result(world, 1)
    assert "no person found" in failed.content and "Nothing was charged" in failed.content
    await world.env.settle()
    assert [job.operation for job in glam.jobs.values()] == ["tryon"], "the second step never runs"
    assert await app.store.get_job(2) is None
    usage = await app.runner.usage(Subject.member(world.guild.id, world.alice.id))
    assert usage.used_today == 0 and usage.in_flight == 0


async def test_an_outfit_is_refused_up_front_with_a_mask_or_one_image_left(atelier: World, glam: FakeGlam,
                                                                           app: App) -> None:
    world = atelier
    masked = await world.alice.slash(world.channel, "tryon", person=("me.png", PHOTO), garment=("shirt.png", SHIRT),
                                     garment2=("trousers.png", TROUSERS), mask="upper")
    assert masked.ephemeral and masked.response is not None and "leave mask out" in masked.response.content
    await app.store.set_limit(f"guild:{world.guild.id}", "member", str(world.alice.id), daily=1, concurrent=None)
    short = await world.alice.slash(world.channel, "tryon", person=("me.png", PHOTO), garment=("shirt.png", SHIRT),
                                    garment2=("trousers.png", TROUSERS))
    assert short.response is not None and "An outfit makes two images and you have 1 left" in \
        short.response.content
    assert glam.uploads == [] and public(world) == []


async def test_when_the_second_step_fails_the_outfit_costs_nothing(atelier: World, glam: FakeGlam,
                                                                   app: App) -> None:
    world = atelier
    glam.scripts = [JobScript(), JobScript(outcome="fail", fail_reason="garment unclear")]
    await world.alice.slash(world.channel, "tryon", person=("me.png", PHOTO), garment=("shirt.png", SHIRT),
                            garment2=("trousers.png", TROUSERS))
    failed = await wait_for_result(world, 2)
    assert "garment unclear" in failed.content
    await world.env.settle()
    job1 = await app.store.get_job(1)
    assert job1 is not None and job1.state.value == "succeeded" and job1.refunded, "its image reached nobody"
    assert (await app.runner.usage(job1.subject)).used_today == 0
