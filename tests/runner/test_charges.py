"""What a finished job charges: the images its member gets (bot.store.refunds), settled once, through the runner,
the fal fake and a real SQLite file."""

from __future__ import annotations

from dataclasses import replace

from bot.operations import ImagineRequest
from bot.store.models import JobState, Origin, Subject
from tests.fakes.base import JobScript
from tests.runner.conftest import Harness
from tests.runner.test_runner import settle

ALICE = Subject.member(1, "alice")


async def test_a_count_4_job_that_returns_one_image_charges_one(harness: Harness) -> None:
    h = harness
    h.fal.script = JobScript(images=1)
    job = await h.app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="four foxes", count=4),
                                    provider="fal")
    assert (await h.app.runner.usage(ALICE)).used_today == 4  # reserved while it runs
    done = await settle(h, job.id)
    assert done.state is JobState.SUCCEEDED and len(done.outputs) == 1
    assert done.cost == 1 and not done.refunded
    assert (await h.app.runner.usage(ALICE)).used_today == 1


async def test_a_result_withheld_as_nsfw_is_not_charged_unless_the_channel_shows_it(harness: Harness) -> None:
    h = harness
    h.fal.script = JobScript(nsfw=True)
    withheld = await h.app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="x", count=2),
                                         provider="fal", withhold_nsfw=True)
    done = await settle(h, withheld.id)
    assert done.state is JobState.SUCCEEDED and done.withhold_nsfw and all(o.nsfw for o in done.outputs)
    assert done.refunded and (await h.app.runner.usage(ALICE)).used_today == 0
    shown = await h.app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="x", count=2), provider="fal")
    done = await settle(h, shown.id)
    assert not done.withhold_nsfw and not done.refunded and done.cost == 2
    assert (await h.app.runner.usage(ALICE)).used_today == 2
    # A retry keeps the rule of the channel it is started in.
    again = await h.app.runner.rerun(withheld.id, ALICE, vary=False, withhold_nsfw=True)
    assert (await settle(h, again.id)).refunded


async def test_the_charge_is_settled_once_however_often_a_crash_makes_it_run(harness: Harness) -> None:
    h = harness
    h.fal.script = JobScript(images=2)
    job = await h.app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="x", count=4), provider="fal")
    done = await settle(h, job.id)
    assert done.cost == 2
    output = done.outputs[0]
    # As if a process died right after writing a one-image result, before settling it and delivering it, and
    # its successors died the same way twice more: each one settles again on adoption.
    pending = await h.app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="y", count=4), start=False)
    h.delivery.fail_times = 3  # the delivery stays owed, so every successor finishes the job again
    for _ in range(3):
        await h.app.store.update_job(pending.id, now=h.app.runner.clock(), state=JobState.SUCCEEDED,
                                     outputs=(replace(output, provider_url=None),))
        await h.app.store.release(pending.id, h.app.runner.owner)
        await h.app.runner.adopt()
        await h.app.runner.wait(pending.id)
        settled = await h.app.store.get_job(pending.id)
        assert settled is not None and settled.cost == 1 and not settled.refunded
        assert not await h.app.store.is_delivered(pending.id, "discord")
    assert (await h.app.runner.usage(ALICE)).used_today == 2 + 1
