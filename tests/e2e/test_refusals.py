"""What is refused is refused privately, costs nothing and never reaches a provider."""

from __future__ import annotations

import asyncio
import io

from PIL import Image

from tests.conftest import png_bytes
from tests.e2e.conftest import E2E
from tests.e2e.harness import started_job
from tests.fakes.discord import InteractionRun, MemberActor


def sixty_megapixels() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (10_000, 6_000)).save(buf, "PNG")
    return buf.getvalue()


async def refused(e2e: E2E, run: InteractionRun, member: MemberActor, onlooker: MemberActor, says: str) -> None:
    assert await run.acked() < 3.0
    answer = await run.reply()
    assert answer.ephemeral and says in answer.content, answer.content
    assert member.can_see(answer) and not onlooker.can_see(answer)


async def test_bad_inputs_are_refused_privately_and_nothing_reaches_a_provider(e2e: E2E) -> None:
    await e2e.quiesce()  # earlier tests' jobs must not move the providers' counters
    before = await e2e.providers.requests()
    alice, bob = await e2e.member("alice"), await e2e.member("bob")
    photo = png_bytes(128, 128)
    cases = [
        ("tryon", {"person": ("me.png", b"just some text, not a picture"), "garment": ("shirt.png", photo)},
         "The person photo is not an image that can be read"),
        ("filter", {"image": ("empty.png", b""), "name": "real_sunset"}, "The image is empty (0 bytes)"),
        ("edit", {"image": ("huge.png", sixty_megapixels()), "prompt": "brighter"},
         "10000x6000 (60.0 megapixels); the limit is 36 megapixels"),
        ("imagine", {"prompt": "a fox in the snow, " * 60 + "at dusk"},
         "The prompt is 1147 characters; the limit is 1000"),
    ]
    for command, options, says in cases:
        run = await alice.run_command(e2e.channel, command, **options)
        await refused(e2e, run, alice, bob, says)
    # Nothing public was posted, no job was recorded or charged, and no provider heard of any of it.
    assert [m for m in e2e.channel.live() if not m.ephemeral] == []
    assert e2e.db.jobs_of(alice.id) == []
    assert await e2e.providers.requests() == before


async def test_ten_commands_at_once_with_three_images_left_start_exactly_three_jobs(e2e: E2E) -> None:
    admin, alice, bob = await e2e.member("admin", manage_guild=True), await e2e.member("alice"), \
        await e2e.member("bob")
    granted = await (await admin.run_command(e2e.channel, "atelier allowance", target=alice, daily=3,
                                             concurrent=10)).reply()
    assert "3 images a day, 10 jobs at once" in granted.content
    await e2e.quiesce()
    novita_jobs = len((await e2e.providers.stats("novita"))["jobs"])

    runs = await asyncio.gather(*(alice.run_command(e2e.channel, "imagine", prompt=f"a fox, take {i}")
                                  for i in range(10)))
    assert all(run.delivered for run in runs)
    answers = [await run.reply() for run in runs]
    assert all(run.ack_latency is not None and run.ack_latency < 3.0 for run in runs)
    assert all(a.ephemeral and alice.can_see(a) and not bob.can_see(a) for a in answers)
    started = [started_job(a.content) for a in answers if a.content.startswith("Started job #")]
    refusals = [a.content for a in answers if not a.content.startswith("Started job #")]
    assert len(started) == 3 and len(refusals) == 7, [a.content for a in answers]
    assert all("You have used 3 of your 3 images today" in text and "resets" in text for text in refusals)

    for job_id in started:
        assert (await e2e.result(job_id)).attachments
    assert sorted(j["id"] for j in e2e.db.jobs_of(alice.id)) == sorted(started)
    assert e2e.db.images_charged(alice.id) == 3
    assert len((await e2e.providers.stats("novita"))["jobs"]) == novita_jobs + 3
    # Only the three jobs have public messages: a status message and a result each.
    public = [m for m in e2e.channel.live() if not m.ephemeral]
    assert len(public) == 6
