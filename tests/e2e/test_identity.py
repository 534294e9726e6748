"""Results no other installation can swallow, and no other message can pass for: each job has a random public token;
its buttons and posts carry it; its posts are recorded with their own nonces. Row ids start at 1 in every database,
so nothing derived from them (nonces, buttons, "job #N" in a message) may identify a job to Discord."""

from __future__ import annotations

import secrets
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import png_bytes
from tests.e2e.conftest import E2E
from tests.e2e.harness import BotProcess, JobsDb, started_job
from tests.fakes.discord import Channel, MemberActor, Message

pytestmark = pytest.mark.asyncio(loop_scope="session")

MESSAGES = "/channels/{channel_id}/messages"
NOVITA_POLL = "/v3/async/task-result"
PHOTO = png_bytes(180, 150, (90, 40, 120))


def posted(db: JobsDb, channel: Channel, job_id: int, kind: str) -> list[Message]:
    """The messages Discord made for one job's posts of this kind, as recorded in that installation's database."""
    nonces = {p["nonce"] for p in db.posts(job_id, kind)}
    return [m for m in channel.live() if not m.ephemeral and m.nonce in nonces]


async def start(member: MemberActor, channel: Channel, command: str = "imagine", **options: object) -> int:
    run = await member.run_command(channel, command, **options)
    return started_job((await run.reply()).content)


async def test_two_fresh_databases_in_one_channel_each_post_their_own_results(e2e: E2E, tmp_path: Path) -> None:
    await e2e.quiesce()
    await e2e.bot.stop()
    seen: list[Message] = []  # every public message of the first installation, as it was
    try:
        for install in (1, 2):
            home = tmp_path / f"install-{install}"
            home.mkdir()
            env = {**e2e.bot.env, "HOME": str(home), "DATABASE_URL": f"sqlite:///{home}/data/atelier.db"}
            bot = BotProcess(home, env)
            db = JobsDb(home / "data" / "atelier.db")
            await bot.start()
            try:
                member = await e2e.member(f"install{install}")
                jobs = [await start(member, e2e.channel, prompt=f"install {install}, picture {n}") for n in (1, 2)]
                assert jobs == [1, 2]  # a fresh database: the same row ids as the first installation's
                for job_id in jobs:
                    [result] = await e2e.discord.wait_for(lambda j=job_id, d=db: posted(d, e2e.channel, j, "result"),
                                                          what=f"install {install}'s job #{job_id}")
                    [status] = posted(db, e2e.channel, job_id, "status")
                    assert not {result.id, status.id} & {m.id for m in seen}, "an earlier message was reused"
                    assert member.id in result.pinged and result.attachments
                    assert result.reference is not None and result.reference["message_id"] == str(status.id)
                    row = await e2e.discord.wait_for(
                        lambda j=job_id, r=result, d=db: (d.job(j) or {}).get("message_id") == str(r.id) and d.job(j),
                        poll=0.1, what="the result recorded")
                    made = await e2e.providers.output_bytes(row["provider"], row["handle"]["remote_id"])
                    assert [a.data for a in result.attachments] == made, "its own images"
                    assert any(row["token"] in b["custom_id"] for b in result.buttons())
                await e2e.discord.wait_for(lambda d=db: d.unfinished() == 0, poll=0.1, what="every delivery recorded")
            finally:
                await bot.stop()
            if install == 1:
                seen = [m for m in e2e.channel.live() if not m.ephemeral]
                first = {m.id: list(m.versions) for m in seen}
        # Nothing of the first installation's was edited, deleted or replied to as if it were the second's.
        assert all(m.id in first and m.versions == first[m.id] and not m.deleted for m in seen)
        assert len([m for m in e2e.channel.live() if not m.ephemeral]) == 8  # two statuses and results, twice
    finally:
        await e2e.bot.start()


async def test_a_result_post_that_fails_once_is_posted_for_its_owner_not_found_in_anothers_message(
        e2e: E2E) -> None:
    alice, bob, carol = await e2e.member("alice"), await e2e.member("bob"), await e2e.member("carol")
    await e2e.providers.hold("novita", NOVITA_POLL)
    job_id = await start(alice, e2e.channel, prompt="a red fox")
    # Another member's job says "job #N" in its prompt: in its status message and in its result.
    other = await start(bob, e2e.channel, "edit", image=("room.png", PHOTO), prompt=f"like job #{job_id} but purple")
    other_result = await e2e.result(other)
    await e2e.job(other)
    lookalikes = [m for m in e2e.channel.live() if f"job #{job_id} but purple" in m.content]
    assert len(lookalikes) == 2

    e2e.discord.fail_next(503, 0, "Service Unavailable", method="POST", route=MESSAGES)
    await e2e.providers.release("novita")
    result = await e2e.result(job_id, timeout=30)
    await e2e.job(job_id)
    await e2e.quiesce()
    assert [c.status for c in e2e.discord.calls("POST", path=f"/channels/{e2e.channel.id}/messages")
            if c.files][-2:] == [503, 200], "the first result post failed and the second was sent"
    assert e2e.results_of(job_id) == [result] and result not in lookalikes
    assert result.pinged == {alice.id} and result.attachments
    row = e2e.db.job(job_id)
    assert row is not None and row["message_id"] == str(result.id)
    recorded = {p["message_id"] for p in e2e.db.posts(job_id)}
    assert not recorded & {str(m.id) for m in lookalikes}

    # Reactions on the other member's messages act on their job, never on this one.
    for message in lookalikes:
        await carol.react(message, "✉️")
    await e2e.discord.wait_for(lambda: len([m for m in carol.dms() if m.attachments]) == 2,
                               what="carol's two DMs")
    alice_images = [a.data for a in result.attachments]
    assert all([a.data for a in m.attachments] == [a.data for a in other_result.attachments]
               and [a.data for a in m.attachments] != alice_images for m in carol.dms())


async def test_a_button_in_the_old_format_works_only_where_this_database_recorded_it(e2e: E2E) -> None:
    alice, bob = await e2e.member("alice"), await e2e.member("bob")
    job_id = await start(alice, e2e.channel, prompt="a lighthouse")
    result = await e2e.result(job_id)
    await e2e.job(job_id)
    # As the version before job tokens posted it: buttons named by row id (atelier:retry:<id>).
    await e2e.discord.restyle_buttons(result, lambda cid: f"atelier:{cid.split(':')[2]}:{job_id}")
    assert result.buttons()[0]["custom_id"] == f"atelier:retry:{job_id}"
    click = await bob.click(result, "Retry")
    again = started_job((await click.reply()).content)
    row = await e2e.job(again)
    assert row["parent_job_id"] == job_id and row["user_id"] == str(bob.id)
    await e2e.result(again)

    # The same ids on a message this database never recorded for that job (an earlier installation's, whose
    # job 5 was somebody else's): refused privately, nothing started, nothing charged.
    foreign = await e2e.discord.post_as_bot(e2e.channel, "job from before", custom_ids=[f"atelier:retry:{job_id}"])
    other = await e2e.discord.post_as_bot(e2e.channel, "job from elsewhere",
                                          custom_ids=[f"atelier:v2:retry:{secrets.token_hex(10)}"])
    for message in (foreign, other):
        refused = await (await bob.click(message, "Retry")).reply()
        assert refused.ephemeral and "earlier installation" in refused.content
    assert [j["id"] for j in e2e.db.jobs_of(bob.id)] == [again]


async def test_a_result_is_delivered_over_rest_before_the_gateway_is_connected(e2e: E2E) -> None:
    """A later process may deliver with no gateway at all: channel, age restriction and upload limit come from REST."""
    alice = await e2e.member("alice")
    adult = await e2e.guild.create_channel("after-dark", nsfw=True)
    await e2e.providers.script("novita", nsfw=True)
    await e2e.providers.hold("novita", NOVITA_POLL)
    job_id = await start(alice, adult, prompt="a fox at night")
    await e2e.discord.wait_for(lambda: (e2e.db.job(job_id) or {}).get("handle"), poll=0.1,
                               what="the job at the provider")
    await e2e.bot.kill()
    await e2e.providers.release("novita")
    gateway = e2e.discord.gateway
    gateway.hold_connections()  # the restarted bot logs in over REST but gets no gateway session
    try:
        await e2e.bot.start(wait_ready=False)
        [result] = await e2e.discord.wait_for(lambda: e2e.results_of(job_id, adult), timeout=30,
                                              what="the result, with no gateway")
        assert not gateway.connected
        assert result.attachments and all(a.spoiler for a in result.attachments)  # the channel's flag, from REST
        assert result.pinged == {alice.id}
        status = e2e.posted(job_id, "status", adult)[0]
        await e2e.discord.wait_for(lambda: "✅ done" in status.content, what="the status message finished")
        assert not gateway.connected
    finally:
        gateway.release_connections()
    await e2e.bot.wait_ready()


async def test_a_result_the_previous_version_posted_but_never_recorded_is_found_not_posted_again(e2e: E2E) -> None:
    alice = await e2e.member("alice")
    job_id = await start(alice, e2e.channel, prompt="a lighthouse")
    result = await e2e.result(job_id)
    await e2e.job(job_id)
    await e2e.quiesce()
    status = e2e.status_message(job_id)
    assert status is not None
    # What the version before job tokens left after dying mid-post, once migration 0004 ran: old buttons on the
    # posted result, the post unrecorded, the delivery still owed, the nonce's few minutes long gone.
    await e2e.discord.restyle_buttons(result, lambda cid: f"atelier:{cid.split(':')[2]}:{job_id}")
    # And an earlier installation's message with the same old ids, which is no reply to this job's status message.
    lookalike = await e2e.discord.post_as_bot(e2e.channel, f"job #{job_id}", custom_ids=[f"atelier:retry:{job_id}"])
    await e2e.bot.kill()
    with sqlite3.connect(e2e.db.path) as db:
        db.execute("UPDATE jobs SET message_id = NULL WHERE id = ?", (job_id,))
        db.execute("UPDATE discord_posts SET message_id = NULL, posted_at = NULL, legacy = 1"
                   " WHERE job_id = ? AND kind = 'result'", (job_id,))
        db.execute("UPDATE deliveries SET state = 'pending', done_at = NULL WHERE job_id = ?", (job_id,))
    e2e.discord.nonce_window_s = 0.0
    await e2e.bot.start()
    await e2e.discord.wait_for(lambda: (e2e.db.job(job_id) or {}).get("message_id") == str(result.id), poll=0.1,
                               timeout=30, what="the old post found and recorded")
    await e2e.quiesce()
    assert [m.id for m in e2e.channel.live() if not m.ephemeral] == [status.id, result.id, lookalike.id]
