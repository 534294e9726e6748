"""Retry and vary a result, by button and by reaction, by its owner and by another member: each new job belongs to
whoever asked and is charged to their quota."""

from __future__ import annotations

from tests.e2e.conftest import E2E
from tests.e2e.harness import started_job
from tests.fakes.discord import MemberActor, Message


async def new_job_of(e2e: E2E, member: MemberActor, known: set[int]) -> int:
    """A reaction has no private answer: the member sees a new public job message for them."""
    def started() -> int | None:
        fresh = [j["id"] for j in e2e.db.jobs_of(member.id) if j["id"] not in known]
        return fresh[0] if fresh and e2e.status_message(fresh[0]) is not None else None
    return await e2e.discord.wait_for(started, poll=0.1, what=f"a new job for {member}")


async def test_retry_and_vary_by_button_and_reaction_charge_whoever_asked(e2e: E2E) -> None:
    alice, bob = await e2e.member("alice"), await e2e.member("bob")
    run = await alice.run_command(e2e.channel, "imagine", prompt="a fox in the snow", seed=42)
    first_id = started_job((await run.reply()).content)
    first = await e2e.result(first_id)
    # The member sees the bot's reactions appear under the result: the cue that they can be used.
    await e2e.discord.wait_for(lambda: e2e.discord.bot.id in first.reacted("🔄"), what="the bot's 🔄")
    assert first.labels() == ["Retry", "Vary", "Remix", "Delete"]

    async def click(member: MemberActor, message: Message, button: str) -> int:
        clicked = await member.click(message, button)
        assert await clicked.acked() < 3.0
        answer = await clicked.reply()
        assert answer.ephemeral and member.can_see(answer)
        return started_job(answer.content)

    bob_retry = await click(bob, first, "Retry")
    alice_vary = await click(alice, first, "Vary")
    await bob.react(first, "🎲")
    bob_vary = await new_job_of(e2e, bob, {bob_retry})
    await alice.react(first, "🔄")
    alice_retry = await new_job_of(e2e, alice, {first_id, alice_vary})

    for job_id in (bob_retry, alice_vary, bob_vary, alice_retry):
        posted = await e2e.result(job_id)
        assert posted.attachments
    jobs = {job_id: await e2e.job(job_id) for job_id in (bob_retry, alice_vary, bob_vary, alice_retry)}
    owners = {job_id: int(job["user_id"]) for job_id, job in jobs.items()}
    assert owners == {bob_retry: bob.id, alice_vary: alice.id, bob_vary: bob.id, alice_retry: alice.id}
    assert all(job["parent_job_id"] == first_id for job in jobs.values())
    # Retry keeps the seed; vary draws a new one.
    assert jobs[bob_retry]["request"]["seed"] == 42 and jobs[alice_retry]["request"]["seed"] == 42
    assert jobs[alice_vary]["request"]["seed"] != 42 and jobs[bob_vary]["request"]["seed"] != 42
    # Each new result mentions whoever asked for it.
    assert bob.mention in e2e.result_message(bob_vary).content  # type: ignore[union-attr]

    assert e2e.db.images_charged(alice.id) == 3 and e2e.db.images_charged(bob.id) == 2
    for member, used in ((alice, 3), (bob, 2)):
        quota = await (await member.run_command(e2e.channel, "quota")).reply()
        assert quota.ephemeral and f"You have used **{used}** of **25** images today" in quota.content


async def test_the_owner_deletes_by_reaction_and_nobody_else_can(e2e: E2E) -> None:
    alice, bob = await e2e.member("alice"), await e2e.member("bob")
    run = await alice.run_command(e2e.channel, "imagine", prompt="a teapot")
    result = await e2e.result(started_job((await run.reply()).content))
    await e2e.discord.wait_for(lambda: e2e.discord.bot.id in result.reacted("✉️"), what="the bot's ✉️")
    await bob.react(result, "❌")
    # Bob's ❌ does nothing; the mail reaction he adds next shows the bot has handled his ❌ by then.
    await bob.react(result, "✉️")
    await e2e.discord.wait_for(lambda: any(m.attachments for m in bob.dms()), what="the result by DM")
    assert not result.deleted
    await alice.react(result, "❌")
    await e2e.discord.wait_for(lambda: result.deleted, what="the result to be deleted")
    [dm] = [m for m in bob.dms() if m.attachments]
    assert [a.data for a in dm.attachments] == [a.data for a in result.attachments]


async def test_the_cooldown_holds_for_reruns_by_reaction_as_by_button(e2e: E2E) -> None:
    admin, alice = await e2e.member("admin", manage_guild=True), await e2e.member("alice")
    await (await admin.run_command(e2e.channel, "atelier cooldown", seconds=600)).reply()
    try:
        first_id = started_job((await (await alice.run_command(e2e.channel, "imagine", prompt="a fox")).reply())
                               .content)
        first = await e2e.result(first_id)
        await e2e.discord.wait_for(lambda: e2e.discord.bot.id in first.reacted("🔄"), what="the bot's 🔄")
        by_button = await (await alice.click(first, "Retry")).reply()
        assert by_button.ephemeral and "Slow down" in by_button.content
        await alice.react(first, "🔄")
        told = await e2e.discord.wait_for(lambda: next((m for m in alice.dms() if "Slow down" in m.content), None),
                                          what="a private word about the cooldown")
        assert "you can start another job in" in told.content
        assert [j["id"] for j in e2e.db.jobs_of(alice.id)] == [first_id]
    finally:
        await (await admin.run_command(e2e.channel, "atelier cooldown", seconds=0)).reply()
