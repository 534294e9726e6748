"""What a member is charged for, end to end: the images they get, as /quota tells them."""

from __future__ import annotations

from tests.e2e.conftest import E2E
from tests.e2e.harness import started_job
from tests.fakes.discord import Channel, MemberActor


async def quota_text(member: MemberActor, channel: Channel) -> str:
    return (await (await member.run_command(channel, "quota")).reply()).content


async def test_a_result_withheld_as_nsfw_costs_nothing_and_one_shown_after_dark_costs_its_image(e2e: E2E) -> None:
    await e2e.providers.script("novita", queue_polls=1, running_polls=1, nsfw=True)
    alice = await e2e.member("alice")
    adult = await e2e.guild.create_channel(f"after-dark-{alice.id}", nsfw=True)
    here = started_job((await (await alice.run_command(e2e.channel, "imagine", prompt="x")).reply()).content)
    withheld = await e2e.result(here)
    assert "NSFW" in withheld.content and withheld.attachments == []
    job = await e2e.job(here)
    assert job["provider"] == "novita" and job["refunded"] == 1
    assert "You have used **0** of **25** images today" in await quota_text(alice, e2e.channel)

    there = started_job((await (await alice.run_command(adult, "imagine", prompt="x")).reply()).content)
    posted = await e2e.discord.wait_for(lambda: alice.find(adult, f"is ready · job #{there}"),
                                        what="the result after dark")
    assert [a.spoiler for a in posted.attachments] == [True]
    assert "You have used **1** of **25** images today" in await quota_text(alice, e2e.channel)


async def test_a_job_that_returns_fewer_images_than_asked_costs_the_images_posted(e2e: E2E) -> None:
    # Novita makes one image per job, so a request for three goes to Pixazo, which here returns one.
    await e2e.providers.script("pixazo", queue_polls=1, running_polls=1, images=1)
    bob = await e2e.member("bob")
    job_id = started_job((await (await bob.run_command(e2e.channel, "imagine", prompt="three owls",
                                                       count=3)).reply()).content)
    result = await e2e.result(job_id)
    assert len(result.attachments) == 1
    job = await e2e.job(job_id)
    assert job["provider"] == "pixazo" and job["cost"] == 1 and job["refunded"] == 0
    assert "You have used **1** of **25** images today" in await quota_text(bob, e2e.channel)


async def test_a_retry_of_a_withheld_result_is_not_charged_either(e2e: E2E) -> None:
    await e2e.providers.script("novita", queue_polls=1, running_polls=1, nsfw=True)
    carol = await e2e.member("carol")
    first = started_job((await (await carol.run_command(e2e.channel, "imagine", prompt="x")).reply()).content)
    withheld = await e2e.result(first)
    by_button = started_job((await (await carol.click(withheld, "Retry")).reply()).content)
    await carol.react(withheld, "🔄")
    by_reaction = await e2e.discord.wait_for(
        lambda: next((j["id"] for j in e2e.db.jobs_of(carol.id) if j["id"] not in (first, by_button)), None),
        what="the job the 🔄 reaction started")
    for job_id in (first, by_button, by_reaction):
        assert "NSFW" in (await e2e.result(job_id)).content
        assert (await e2e.job(job_id))["refunded"] == 1
    assert "You have used **0** of **25** images today" in await quota_text(carol, e2e.channel)


async def test_a_result_withheld_because_the_channel_is_no_longer_age_restricted_costs_nothing(e2e: E2E) -> None:
    # Started after dark, so it was meant to be shown; the channel's age restriction is lifted while it runs.
    await e2e.providers.script("novita", queue_polls=1, running_polls=1, nsfw=True)
    dave = await e2e.member("dave")
    adult = await e2e.guild.create_channel(f"after-dark-{dave.id}", nsfw=True)
    await e2e.providers.hold("novita", "/v3/async/task-result")
    job_id = started_job((await (await dave.run_command(adult, "imagine", prompt="x")).reply()).content)
    await e2e.job(job_id, state="queued")
    adult.nsfw = False
    await e2e.providers.release("novita")
    await e2e.job(job_id)
    withheld = await e2e.discord.wait_for(lambda: next(iter(e2e.results_of(job_id, adult)), None),
                                          what="the withheld result")
    assert "NSFW" in withheld.content and withheld.attachments == []
    assert (await e2e.job(job_id))["refunded"] == 1
    assert "You have used **0** of **25** images today" in await quota_text(dave, e2e.channel)
    spend = e2e.db.rows("SELECT reserved_micro, member_micro FROM job_spend WHERE job_id = ?", (job_id,))
    assert spend == [{"reserved_micro": 0, "member_micro": 0}]  # nor does it count against any budget
