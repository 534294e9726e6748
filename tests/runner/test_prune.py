"""Pruning old local copies: content-addressed blobs are shared between jobs, so an image a job inside retention
still uses stays. The runner, the fal fake and a real store (SQLite and a blob directory, PostgreSQL and blob rows)."""

from __future__ import annotations

from datetime import timedelta

from bot.images import ImageLimits, load_image
from bot.operations import EditRequest, ImagineRequest
from bot.store.models import JobState, Origin, Subject
from tests.runner.conftest import Harness, age_blob, kept
from tests.runner.test_runner import settle

ALICE = Subject.member(1, "alice")
BOB = Subject.member(1, "bob")


async def age(h: Harness, job_id: int, days: float) -> None:
    """As if the job had finished `days` ago (and its images been written then)."""
    job = await h.app.store.get_job(job_id)
    assert job is not None and job.finished_at is not None
    await h.app.store.update_job(job_id, now=h.app.runner.clock(), finished_at=job.finished_at - timedelta(days=days))
    for output in job.outputs:
        await age_blob(h.app, output.sha256, job.finished_at - timedelta(days=days))


async def test_a_newer_jobs_retry_still_works_after_pruning_an_old_job_whose_output_it_edits(harness: Harness) -> None:
    h = harness
    old = await settle(h, (await h.app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="a fox"))).id)
    (image,) = old.outputs
    # Bob saved Alice's result and edits it: his input is the very same blob.
    photo = load_image(await h.app.blobs.get(image.sha256), filename="fox.png", limits=ImageLimits())
    newer = await settle(h, (await h.app.runner.create(BOB, Origin.DISCORD,
                                                      EditRequest(images=(photo,), prompt="in winter"))).id)
    assert newer.request["images"][0]["sha256"] == image.sha256
    await age(h, old.id, 8)

    await h.app.runner.prune()
    pruned = await h.app.store.get_job(old.id)
    assert pruned is not None and pruned.outputs[0].path is None  # the old job's own copy is gone ...
    retry = await h.app.runner.rerun(newer.id, BOB, vary=False)  # ... the image is not: Bob can retry
    done = await settle(h, retry.id)
    assert done.state is JobState.SUCCEEDED
    assert len(h.fal.calls("POST", "/image-to-image")) == 2


async def test_identical_outputs_of_a_newer_job_survive_and_go_when_it_ages_out(harness: Harness) -> None:
    h = harness
    # The fake makes the same image for every job, as a provider does for the same prompt and seed.
    old = await settle(h, (await h.app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="x", seed=1))).id)
    h.delivery.fail_times = 1  # the newer job's delivery is still owed when pruning runs
    newer = await h.app.runner.create(BOB, Origin.DISCORD, ImagineRequest(prompt="x", seed=1))
    await h.app.runner.wait(newer.id)
    newer_done = await h.app.store.get_job(newer.id)
    assert newer_done is not None and newer_done.outputs[0].sha256 == old.outputs[0].sha256
    await age(h, old.id, 8)

    assert await h.app.runner.prune() == 0
    assert await h.app.blobs.get(old.outputs[0].sha256)  # the newer job's delivery, ✉️ and resume need it
    await h.app.store.release(newer.id, h.app.runner.owner)
    await h.app.runner.adopt()
    delivered = await settle(h, newer.id)
    assert [j.id for j in h.delivery.delivered] == [old.id, newer.id] and len(delivered.outputs) == 1

    # Once the newer job has aged out too, the image goes.
    await age(h, newer.id, 9)
    assert await h.app.runner.prune() == 1
    assert not await kept(h.app, delivered.outputs[0].sha256)


async def test_an_image_stored_just_now_for_a_job_not_yet_recorded_is_kept(harness: Harness) -> None:
    h = harness
    old = await settle(h, (await h.app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="x"))).id)
    await age(h, old.id, 8)
    sha256 = old.outputs[0].sha256
    # A new job has just stored the same image and is about to commit its row when the prune runs.
    await h.app.blobs.put(await h.app.blobs.get(sha256))
    assert await h.app.runner.prune() == 0 and await kept(h.app, sha256)
