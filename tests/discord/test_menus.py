"""The message context menus against SimCord: on a member's plain image message and on the bot's own results, each
opens a form, and the job runs like its slash command — the message's image as its input, a result's job as its
parent, the same refusals."""

# ruff: noqa: F811 - the fixtures are imported from test_bot and named again as parameters
from __future__ import annotations

import hashlib
from typing import Any

from bot.app import App
from bot.store.models import Subject
from tests.conftest import png_bytes
from tests.discord.conftest import World
from tests.discord.test_bot import (  # noqa: F401 - fixtures
    PHOTO,
    admin,
    app,
    atelier,
    fal,
    glam,
    late_wait,
    public,
    simcord_bot,
    wait_for_result,
)
from tests.fakes.fal import FakeFal
from tests.fakes.glam import FakeGlam

PICTURE = png_bytes(260, 200, (200, 120, 30))
SHIRT = png_bytes(140, 150, (20, 20, 220))
ME = png_bytes(230, 180, (120, 40, 200))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def input_shas(job: Any) -> list[str]:
    request = job.request
    refs = request.get("images") or [request[k] for k in ("image", "person", "garment") if k in request]
    return [ref["sha256"] for ref in refs]


async def test_edit_this_image_on_a_members_message_and_on_a_result(atelier: World, fal: FakeFal,
                                                                    app: App) -> None:
    world = atelier
    plain = await world.alice.send(world.channel, "my sketch", attachments=[("sketch.png", PICTURE)])
    shown = await world.bob.context_menu(world.channel, "Edit this image", plain)
    assert shown.modal is not None and shown.modal["title"] == "Edit this image"
    started = await world.bob.submit_modal(shown, {"prompt": "add a moon"})
    assert started.ephemeral and started.response is not None
    assert started.response.content.startswith("Started job #1")
    result = await wait_for_result(world, 1)
    first = await app.store.get_job(1)
    assert first is not None and first.subject.user_id == str(world.bob.id) and first.parent_job_id is None
    assert input_shas(first) == [sha(PICTURE)] and first.request["prompt"] == "add a moon"
    assert list(fal.jobs.values())[-1].body["input"]["prompt"] == "add a moon"

    # Taken further from the result itself: the result's image is the input, its job the parent.
    made = await result.attachments[0].read()
    shown = await world.alice.context_menu(world.channel, "Edit this image", result)
    await world.alice.submit_modal(shown, {"prompt": "now add stars"})
    await wait_for_result(world, 2)
    second = await app.store.get_job(2)
    assert second is not None and second.parent_job_id == 1 and input_shas(second) == [sha(made)]


async def test_apply_a_filter_checks_the_name_like_the_command(atelier: World, glam: FakeGlam, app: App) -> None:
    world = atelier
    plain = await world.alice.send(world.channel, "", attachments=[("me.png", PICTURE)])
    shown = await world.alice.context_menu(world.channel, "Apply a filter", plain)
    refused = await world.alice.submit_modal(shown, {"name": "glitter"})
    assert refused.ephemeral and refused.response is not None and "Unknown filter 'glitter'" in \
        refused.response.content
    assert glam.calls("POST", "/generate") == []
    shown = await world.alice.context_menu(world.channel, "Apply a filter", plain)
    await world.alice.submit_modal(shown, {"name": "real_sunset"})
    posted = await wait_for_result(world, 1)
    assert "filter **real\\_sunset**" in posted.content
    job = await app.store.get_job(1)
    assert job is not None and input_shas(job) == [sha(PICTURE)]


async def test_try_on_as_garment_with_my_photo_and_as_person_with_an_upload(atelier: World, glam: FakeGlam,
                                                                             app: App) -> None:
    world = atelier
    shirt = await world.bob.send(world.channel, "this shirt", attachments=[("shirt.png", SHIRT)])
    shown = await world.alice.context_menu(world.channel, "Try on: use as garment", shirt)
    refused = await world.alice.submit_modal(shown, {})  # no upload and no saved photo
    assert refused.response is not None and "/settings photo:" in refused.response.content

    await world.alice.slash(world.channel, "settings", photo=("me.png", ME))
    shown = await world.alice.context_menu(world.channel, "Try on: use as garment", shirt)
    await world.alice.submit_modal(shown, {"mask": ["upper"]})
    await wait_for_result(world, 1)
    job = await app.store.get_job(1)
    assert job is not None and input_shas(job) == [sha(ME), sha(SHIRT)] and job.request["mask"] == "upper"

    portrait = await world.bob.send(world.channel, "me", attachments=[("bob.png", PICTURE)])
    shown = await world.bob.context_menu(world.channel, "Try on: use as person", portrait)
    await world.bob.submit_modal(shown, {"other": ("jacket.png", SHIRT)})
    await wait_for_result(world, 2)
    job = await app.store.get_job(2)
    assert job is not None and input_shas(job) == [sha(PICTURE), sha(SHIRT)]
    assert {sha(u.data) for u in glam.uploads[-2:]} == {sha(PICTURE), sha(SHIRT)}


async def test_a_message_without_an_image_is_refused_at_once(atelier: World, fal: FakeFal) -> None:
    world = atelier
    text = await world.alice.send(world.channel, "just words")
    refused = await world.alice.context_menu(world.channel, "Edit this image", text)
    assert refused.modal is None and refused.ephemeral and refused.response is not None
    assert "has no image attached" in refused.response.content


async def test_a_menu_job_obeys_the_channel_rules_and_costs_nothing_when_refused(
        atelier: World, admin: Any, fal: FakeFal, app: App) -> None:
    world = atelier
    await admin.slash(world.channel, "atelier channels", command="edit", rule="deny", channel=world.channel)
    plain = await world.alice.send(world.channel, "", attachments=[("me.png", PICTURE)])
    shown = await world.alice.context_menu(world.channel, "Edit this image", plain)
    refused = await world.alice.submit_modal(shown, {"prompt": "add a hat"})
    assert refused.ephemeral and refused.response is not None
    assert "/edit cannot be used in this channel" in refused.response.content
    assert fal.requests == []
    assert await app.store.list_jobs(Subject.member(world.guild.id, world.alice.id, ()), limit=5) == []
