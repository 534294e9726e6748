"""A message context menu in the real bot process: Apps → "Edit this image" on a member's own image message and on a
result, as Discord sends a message command (interaction type 2, data type 3, target_id and resolved.messages); the
form's submit runs the edit on that very image."""

from __future__ import annotations

import hashlib

from tests.conftest import png_bytes
from tests.e2e.conftest import E2E
from tests.e2e.harness import started_job

SKETCH = png_bytes(240, 180, (210, 90, 20))
PORTRAIT = png_bytes(200, 230, (80, 150, 40))  # photos no other test uses, so they are recognisable at Glam
JACKET = png_bytes(130, 150, (150, 20, 150))


async def test_edit_this_image_from_the_apps_menu(e2e: E2E) -> None:
    alice, bob = await e2e.member("alice"), await e2e.member("bob")
    plain = await alice.post(e2e.channel, "my sketch", files=[("sketch.png", SKETCH)])

    opened = await bob.run_message_command(plain, "Edit this image")
    assert await opened.acked() < 3.0 and opened.interaction.ack_type == 9
    answer = await (await bob.submit_modal(opened, {"prompt": "add a moon"})).reply()
    assert answer.ephemeral and bob.can_see(answer) and not alice.can_see(answer)
    first_id = started_job(answer.content)
    result = await e2e.result(first_id)
    job = await e2e.job(first_id)
    assert int(job["user_id"]) == bob.id and job["parent_job_id"] is None and job["operation"] == "edit"
    assert [ref["sha256"] for ref in job["request"]["images"]] == [hashlib.sha256(SKETCH).hexdigest()]
    body = await e2e.providers.submitted(job["provider"], job["handle"]["remote_id"])
    assert body["input"]["prompt"] == "add a moon"

    # On the result itself: the new job's input is the posted image, and it links to its parent.
    opened = await alice.run_message_command(result, "Edit this image")
    await opened.acked()
    second_id = started_job((await (await alice.submit_modal(opened, {"prompt": "add stars"})).reply()).content)
    await e2e.result(second_id)
    second = await e2e.job(second_id)
    assert second["parent_job_id"] == first_id and int(second["user_id"]) == alice.id
    # The fakes' images fit the upload limit, so the posted image is the job's output byte for byte.
    assert [ref["sha256"] for ref in second["request"]["images"]] == [job["outputs"][0]["sha256"]]


async def test_try_on_as_person_with_the_garment_uploaded_in_the_form(e2e: E2E) -> None:
    alice = await e2e.member("alice")
    portrait = await alice.post(e2e.channel, "me today", files=[("me.png", PORTRAIT)])
    opened = await alice.run_message_command(portrait, "Try on: use as person")
    assert await opened.acked() < 3.0 and opened.interaction.ack_type == 9
    sent = await alice.submit_modal(opened, {"other": [("jacket.png", JACKET)], "mask": ["upper"]})
    job_id = started_job((await sent.reply()).content)
    posted = await e2e.result(job_id)
    assert "mask upper" in posted.content and posted.attachments
    job = await e2e.job(job_id)
    sha = lambda data: hashlib.sha256(data).hexdigest()  # noqa: E731
    assert job["request"]["person"]["sha256"] == sha(PORTRAIT) and job["request"]["garment"]["sha256"] == sha(JACKET)
    uploaded = set((await e2e.providers.stats("glam"))["files"].values())
    assert {sha(PORTRAIT), sha(JACKET)} <= uploaded, "both photos reached Glam byte for byte"
