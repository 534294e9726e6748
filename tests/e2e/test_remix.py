"""Remix in the real bot process: the button answers with a form (interaction callback type 9) within Discord's
three seconds, and the member's submission (interaction type 5) runs as their new job with exactly the values they
typed, at the provider."""

from __future__ import annotations

from tests.conftest import png_bytes
from tests.e2e.conftest import E2E
from tests.e2e.harness import started_job

PHOTO = png_bytes(190, 150, (70, 140, 90))


async def test_remix_a_result_through_its_form(e2e: E2E) -> None:
    alice, bob = await e2e.member("alice"), await e2e.member("bob")
    run = await alice.run_command(e2e.channel, "edit", image=("room.png", PHOTO), prompt="make it winter", seed=5)
    first_id = started_job((await run.reply()).content)
    first = await e2e.result(first_id)
    assert "Remix" in first.labels()

    opened = await bob.click(first, "Remix")
    assert await opened.acked() < 3.0
    form = opened.interaction.modal
    assert form is not None and opened.interaction.ack_type == 9, "the form is the first response, not a defer"
    shown = {c["custom_id"]: c.get("value") for c in (row["component"] for row in form["components"])}
    assert shown == {"prompt": "make it winter", "size": None, "seed": "5", "count": "1"}

    sent = await bob.submit_modal(opened, {"prompt": "make it spring", "seed": "77", "size": "512x768"})
    answer = await sent.reply()
    assert answer.ephemeral and bob.can_see(answer) and not alice.can_see(answer)
    remix_id = started_job(answer.content)
    posted = await e2e.result(remix_id)
    assert posted.attachments and bob.mention in posted.content and "seed 77" in posted.content

    job = await e2e.job(remix_id)
    assert int(job["user_id"]) == bob.id and job["parent_job_id"] == first_id
    body = await e2e.providers.submitted(job["provider"], job["handle"]["remote_id"])
    assert job["provider"] == "fal"
    assert body["input"]["prompt"] == "make it spring" and body["input"]["seed"] == 77
    assert body["input"]["image_size"] == {"width": 512, "height": 768}
    assert e2e.db.images_charged(bob.id) == 1 and e2e.db.images_charged(alice.id) == 1


async def test_a_bad_value_in_the_form_is_refused_privately_and_costs_nothing(e2e: E2E) -> None:
    alice = await e2e.member("alice")
    run = await alice.run_command(e2e.channel, "edit", image=("room.png", PHOTO), prompt="make it winter")
    first = await e2e.result(started_job((await run.reply()).content))
    opened = await alice.click(first, "Remix")
    await opened.acked()
    before = len(e2e.db.jobs_of(alice.id))
    refused = await (await alice.submit_modal(opened, {"count": "9"})).reply()
    assert refused.ephemeral and "The count must be a whole number from 1 to 4" in refused.content
    assert len(e2e.db.jobs_of(alice.id)) == before and e2e.db.images_charged(alice.id) == 1
