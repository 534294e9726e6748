"""A message context menu in the real bot process: Apps → "Edit this image" on a member's own image message and on a
result, as Discord sends a message command (interaction type 2, data type 3, target_id and resolved.messages); the
form's submit runs the edit on that very image."""

from __future__ import annotations

import hashlib

from tests.conftest import png_bytes
from tests.e2e.conftest import E2E
from tests.e2e.harness import started_job

SKETCH = png_bytes(240, 180, (210, 90, 20))


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
