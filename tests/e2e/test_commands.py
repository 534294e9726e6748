"""Each image command, end to end: what the member notices, from the acknowledgement to the image in the channel."""

from __future__ import annotations

import hashlib
from typing import Any

from tests.conftest import png_bytes
from tests.e2e.conftest import E2E
from tests.e2e.harness import started_job
from tests.fakes.discord import MemberActor, Message

PHOTO = png_bytes(200, 160, (30, 90, 160))
GARMENT = png_bytes(120, 140, (200, 200, 41))


async def run_to_result(e2e: E2E, member: MemberActor, command: str, provider: str, **options: Any) -> Message:
    """Run a command and check everything the member notices on the way; return the result message."""
    other = await e2e.member("onlooker")
    run = await member.run_command(e2e.channel, command, **options)
    assert run.delivered
    assert await run.acked() < 3.0
    reply = await run.reply()
    # Private: only the member sees the answer; nobody else in the channel does, and the bot cannot read it back.
    assert reply.ephemeral and reply.content.startswith("Started job #")
    assert member.can_see(reply) and not other.can_see(reply)
    job_id = started_job(reply.content)

    status = e2e.status_message(job_id)
    assert status is not None and other.can_see(status), "the job's public message is posted before the answer"
    # Sent with the nonce recorded for it: unique across installations and within Discord's 25 characters.
    [post] = e2e.db.posts(job_id, "status")
    assert status.nonce == post["nonce"] and len(post["nonce"]) <= 25 and post["message_id"] == str(status.id)
    result = await e2e.result(job_id)
    assert other.can_see(result) and member.mention in result.content and member.id in result.mentions
    assert result.reference is not None and result.reference["message_id"] == str(status.id)
    assert result.labels()[:1] == ["Retry"] and "Delete" in result.labels()

    # The public message moved through the job's states and ends "done".
    await e2e.discord.wait_for(lambda: "✅ done" in status.content, what="the status message to say done")
    progress = status.versions[1:-1]
    assert any("queued at" in v or "running at" in v for v in progress), status.versions
    assert all(f"job #{job_id}" in v for v in status.versions)

    job = await e2e.job(job_id)
    assert job["provider"] == provider and job["user_id"] == str(member.id)
    assert job["message_id"] == str(result.id) and job["charged"] == 1 and job["refunded"] == 0
    made = await e2e.providers.output_bytes(provider, job["handle"]["remote_id"])
    assert [a.data for a in result.attachments] == made, "the posted images are the provider's, byte for byte"
    return result


async def test_imagine_posts_novitas_image(e2e: E2E) -> None:
    alice = await e2e.member("alice")
    result = await run_to_result(e2e, alice, "imagine", "novita", prompt="a lighthouse at dusk")
    assert "“a lighthouse at dusk”" in result.content and "novita" in result.content
    assert result.labels() == ["Retry", "Vary", "Remix", "Delete"]


async def test_edit_sends_the_photo_and_prompt_to_fal(e2e: E2E) -> None:
    alice = await e2e.member("alice")
    result = await run_to_result(e2e, alice, "edit", "fal", image=("room.png", PHOTO), prompt="make it winter",
                                 seed=7)
    assert "seed 7" in result.content and "fal" in result.content
    job = e2e.db.rows("SELECT request FROM jobs WHERE message_id = ?", (str(result.id),))[0]
    assert job["request"]["prompt"] == "make it winter" and job["request"]["seed"] == 7


async def test_filter_restyles_with_a_glam_filter(e2e: E2E) -> None:
    alice = await e2e.member("alice")
    result = await run_to_result(e2e, alice, "filter", "glam", image=("me.jpg", PHOTO), name="real_sunset")
    assert "filter **real\\_sunset**" in result.content  # markdown-escaped, shown as typed
    assert result.labels() == ["Retry", "Remix", "Delete"]  # a filter takes no seed: nothing to vary


async def test_tryon_puts_the_garment_on_the_person(e2e: E2E) -> None:
    alice = await e2e.member("alice")
    person = png_bytes(210, 170, (140, 60, 60))  # photos no other test uses, so they are recognisable at Glam
    before = (await e2e.providers.stats("glam"))["files"]
    result = await run_to_result(e2e, alice, "tryon", "glam", person=("me.png", person),
                                 garment=("shirt.png", GARMENT), mask="upper")
    assert "mask upper" in result.content and result.labels() == ["Retry", "Remix", "Delete"]
    # Both photos reached Glam, byte for byte as the member attached them.
    uploaded = set((await e2e.providers.stats("glam"))["files"].values()) - set(before.values())
    assert {hashlib.sha256(person).hexdigest(), hashlib.sha256(GARMENT).hexdigest()} <= uploaded


async def test_nsfw_images_are_posted_only_as_spoilers_in_age_restricted_channels(e2e: E2E) -> None:
    await e2e.providers.script("novita", queue_polls=1, running_polls=1, nsfw=True)
    alice = await e2e.member("alice")
    adult = await e2e.guild.create_channel(f"after-dark-{alice.id}", nsfw=True)
    here = started_job((await (await alice.run_command(e2e.channel, "imagine", prompt="x")).reply()).content)
    there = started_job((await (await alice.run_command(adult, "imagine", prompt="x")).reply()).content)
    withheld = await e2e.result(here)
    assert "NSFW" in withheld.content and withheld.attachments == []
    posted = await e2e.discord.wait_for(lambda: alice.find(adult, f"is ready · job #{there}"),
                                        what="the result after dark")
    assert [a.spoiler for a in posted.attachments] == [True]
