"""Remix against SimCord: a result's button opens a form pre-filled with its job's parameters, and what the member
changes runs as their new job, with exactly those values at the provider; bad values are refused privately, free."""

# ruff: noqa: F811 - the fixtures are imported from test_bot and named again as parameters
from __future__ import annotations

from typing import Any

import pytest

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
    simcord_bot,
    wait_for_result,
)
from tests.fakes.fal import FakeFal
from tests.fakes.glam import FakeGlam


def fields(modal: dict[str, Any]) -> dict[str, Any]:
    """The form's controls by custom_id, as the member's client shows them (each wrapped in a label)."""
    found = {}
    for row in modal["components"]:
        control = row.get("component") or row["components"][0]
        found[control["custom_id"]] = control
    return found


def bodies(fal: FakeFal) -> list[dict[str, Any]]:
    return [job.body["input"] for job in fal.jobs.values()]


async def test_remix_opens_a_prefilled_form_and_runs_the_changed_job_with_exactly_those_values(
        atelier: World, fal: FakeFal, app: App) -> None:
    world = atelier
    await world.alice.slash(world.channel, "imagine", prompt="a red fox", seed=7, size="portrait_4_3")
    first = await wait_for_result(world, 1)

    shown = await world.bob.click(first, label="Remix")
    assert shown.modal is not None, "the button answers with the form itself"
    form = fields(shown.modal)
    assert form["prompt"]["value"] == "a red fox" and form["seed"]["value"] == "7"
    assert form["size"]["value"] == "portrait_4_3" and form["count"]["value"] == "1"
    assert len(shown.modal["components"]) <= 5

    done = await world.bob.submit_modal(shown, {"prompt": "a blue fox in snow", "size": "1024x768", "seed": "99",
                                                "count": "2"})
    assert done.ephemeral and done.response is not None and done.response.content.startswith("Started job #2")
    posted = await wait_for_result(world, 2)
    assert len(posted.attachments) == 2 and world.bob.mention in posted.content
    sent = bodies(fal)[-1]
    assert sent["prompt"] == "a blue fox in snow" and sent["seed"] == 99 and sent["num_images"] == 2
    assert sent["image_size"] == {"width": 1024, "height": 768}
    job = await app.store.get_job(2)
    assert job is not None and job.parent_job_id == 1 and job.subject.user_id == str(world.bob.id)
    assert (await app.runner.usage(job.subject)).used_today == 2  # charged to whoever remixed


async def test_remix_of_an_edit_keeps_its_images_and_an_empty_seed_is_left_to_the_provider(
        atelier: World, fal: FakeFal, app: App) -> None:
    world = atelier
    await world.alice.slash(world.channel, "edit", image=("room.png", PHOTO), prompt="make it winter", seed=3)
    first = await wait_for_result(world, 1)
    shown = await world.alice.click(first, label="Remix")
    assert shown.modal is not None
    await world.alice.submit_modal(shown, {"prompt": "make it autumn", "seed": "", "size": "", "count": "1"})
    await wait_for_result(world, 2)
    original, remixed = bodies(fal)
    assert remixed["prompt"] == "make it autumn" and "seed" not in remixed
    assert remixed["image_urls"] == original["image_urls"]  # the very same input image


async def test_remix_of_a_filter_and_a_tryon(atelier: World, glam: FakeGlam) -> None:
    world = atelier
    await world.alice.slash(world.channel, "filter", image=("me.png", PHOTO), name="real_sunset")
    shown = await world.alice.click(await wait_for_result(world, 1), label="Remix")
    assert shown.modal is not None and fields(shown.modal)["name"]["value"] == "real_sunset"
    refused = await world.alice.submit_modal(shown, {"name": "glitter"})  # checked like the command's name
    assert refused.ephemeral and refused.response is not None and "Unknown filter 'glitter'" in \
        refused.response.content
    assert len(glam.jobs) == 1
    shown = await world.alice.click(await wait_for_result(world, 1), label="Remix")
    other = next(name for name in glam.filters if name != "real_sunset")
    await world.alice.submit_modal(shown, {"name": other})
    await wait_for_result(world, 2)
    assert [job.body["filter_name"] for job in glam.jobs.values() if job.operation == "filter"] == \
        ["real_sunset", other]

    await world.alice.slash(world.channel, "tryon", person=("me.png", PHOTO), garment=("shirt.png",
                                                                                      png_bytes(120, 120)))
    shown = await world.alice.click(await wait_for_result(world, 3), label="Remix")
    assert shown.modal is not None
    mask = fields(shown.modal)["mask"]
    assert [o["value"] for o in mask["options"] if o.get("default")] == ["overall"]
    await world.alice.submit_modal(shown, {"mask": ["lower"]})
    posted = await wait_for_result(world, 4)
    assert "mask lower" in posted.content
    assert [job.body["mask_type"] for job in glam.jobs.values() if job.operation == "tryon"] == ["overall", "lower"]


@pytest.mark.parametrize(("values", "says"), [
    ({"prompt": "a fox", "seed": "-1", "count": "1"}, "The seed must be a whole number from 0 to 4294967295"),
    ({"prompt": "a fox", "seed": "seven", "count": "1"}, "The seed must be a whole number"),
    ({"prompt": "a fox", "count": "5"}, "The count must be a whole number from 1 to 4"),
    ({"prompt": "a fox", "count": "1", "size": "huge"}, "Unknown size 'huge'"),
    ({"prompt": "a fox", "count": "1", "size": "100x100"}, "256"),
    ({"prompt": "x" * 1001, "count": "1"}, "The prompt is 1001 characters; the limit is 1000"),
    ({"prompt": "   ", "count": "1"}, "The prompt is empty"),
])
async def test_bad_values_in_the_form_are_refused_privately_and_cost_nothing(
        atelier: World, fal: FakeFal, app: App, values: dict[str, str], says: str) -> None:
    world = atelier
    await world.alice.slash(world.channel, "imagine", prompt="a fox")
    first = await wait_for_result(world, 1)
    sent_before = len(fal.jobs)
    shown = await world.bob.click(first, label="Remix")
    refused = await world.bob.submit_modal(shown, values)
    assert refused.ephemeral and refused.response is not None and says in refused.response.content, \
        refused.response.content if refused.response else None
    assert len(fal.jobs) == sent_before
    assert await app.store.list_jobs(Subject.member(world.guild.id, world.bob.id, ()), limit=5) == []


async def test_a_remix_obeys_the_blocklist_and_the_channel_rules(atelier: World, admin: Any, fal: FakeFal,
                                                                 app: App) -> None:
    world = atelier
    await world.alice.slash(world.channel, "imagine", prompt="a fox")
    first = await wait_for_result(world, 1)
    await admin.slash(world.channel, "atelier blocklist add", entry="gore")
    shown = await world.bob.click(first, label="Remix")
    refused = await world.bob.submit_modal(shown, {"prompt": "g0re everywhere", "count": "1"})
    assert refused.response is not None and "That prompt is not allowed in this server" in refused.response.content
    await admin.slash(world.channel, "atelier channels", command="imagine", rule="deny", channel=world.channel)
    shown = await world.bob.click(first, label="Remix")
    refused = await world.bob.submit_modal(shown, {"prompt": "a calm fox", "count": "1"})
    assert refused.response is not None and refused.ephemeral and "imagine" in refused.response.content
    assert len(fal.jobs) == 1
    assert await app.store.list_jobs(Subject.member(world.guild.id, world.bob.id, ()), limit=5) == []


async def test_a_form_left_open_across_a_restart_is_answered_not_left_to_fail(atelier: World, fal: FakeFal,
                                                                             app: App) -> None:
    world = atelier
    await world.alice.slash(world.channel, "imagine", prompt="a fox")
    shown = await world.bob.click(await wait_for_result(world, 1), label="Remix")
    # A restart forgets every open form: the process that showed it is gone.
    world.env.bot._connection._view_store._modals.clear()  # type: ignore[attr-defined]
    answered = await world.bob.submit_modal(shown, {"prompt": "a wolf", "count": "1"})
    assert answered.ephemeral and answered.response is not None
    assert "expired" in answered.response.content and len(fal.jobs) == 1


async def test_two_members_remix_the_same_result_at_once(atelier: World, fal: FakeFal, app: App) -> None:
    world = atelier
    await world.alice.slash(world.channel, "imagine", prompt="a fox")
    first = await wait_for_result(world, 1)
    alices, bobs = await world.alice.click(first, label="Remix"), await world.bob.click(first, label="Remix")
    by_bob = await world.bob.submit_modal(bobs, {"prompt": "a wolf", "count": "1"})
    by_alice = await world.alice.submit_modal(alices, {"prompt": "a lynx", "count": "1"})
    assert by_bob.response is not None and by_bob.response.content.startswith("Started job #2")
    assert by_alice.response is not None and by_alice.response.content.startswith("Started job #3")
    await wait_for_result(world, 3)
    assert sorted(job.body["input"]["prompt"] for job in fal.jobs.values()) == ["a fox", "a lynx", "a wolf"]
