"""The bot under Discord's rules and failures: rate limits, a dropped gateway, missing permissions, a dead
interaction token, an answer lost on the way back, and a SIGKILL in the middle of a job."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from tests.e2e.conftest import E2E
from tests.e2e.harness import started_job
from tests.fakes.discord import MemberActor, Perm

MESSAGES = "/channels/{channel_id}/messages"
EDIT = "/channels/{channel_id}/messages/{message_id}"
REACTION = "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me"
NOVITA_POLL = "/v3/async/task-result"



async def start(e2e: E2E, member: MemberActor, prompt: str) -> int:
    run = await member.run_command(e2e.channel, "imagine", prompt=prompt)
    return started_job((await run.reply()).content)


async def test_an_interaction_acknowledged_too_late_costs_nothing(e2e: E2E) -> None:
    await e2e.quiesce()
    before = await e2e.providers.requests()
    alice = await e2e.member("alice")
    e2e.discord.ack_deadline_s = 0.0  # whatever the bot does, it is too late
    run = await alice.run_command(e2e.channel, "imagine", prompt="too late")
    await e2e.discord.wait_for(lambda: run.interaction.rejected, what="the bot's acknowledgement")
    assert run.interaction.rejected == [("callback", 404, 10062)]
    with pytest.raises(AssertionError, match="did not respond"):
        await run.acked()
    e2e.discord.ack_deadline_s = 3.0
    quota = await (await alice.run_command(e2e.channel, "quota")).reply()
    assert "You have used **0** of **25**" in quota.content
    assert e2e.db.jobs_of(alice.id) == [] and [m for m in e2e.channel.live() if not m.ephemeral] == []
    assert await e2e.providers.requests() == before


async def test_rate_limited_posts_wait_as_told_and_arrive_once(e2e: E2E) -> None:
    alice = await e2e.member("alice")
    since = time.monotonic()
    e2e.discord.rate_limit_next(2, route=MESSAGES, retry_after=0.25)
    job_id = await start(e2e, alice, "a fox")
    result = await e2e.result(job_id)
    statuses = [c.status for c in e2e.discord.calls("POST", MESSAGES, since=since)]
    assert statuses[:3] == [429, 429, 200] and statuses.count(200) == 2  # status message, then the result
    assert e2e.results_of(job_id) == [result] and e2e.status_message(job_id) is not None


async def test_the_bot_paces_itself_by_discords_rate_limit_headers(e2e: E2E) -> None:
    # Discord's own limit on reactions: one per quarter second per channel. The bot adds three to each result.
    e2e.discord.rest.limits[REACTION] = (1, 0.25)
    alice = await e2e.member("alice")
    over, since = e2e.discord.rest.rate_limited, time.monotonic()
    result = await e2e.result(await start(e2e, alice, "a fox"))
    await e2e.discord.wait_for(lambda: all(e2e.discord.bot.id in result.reacted(e) for e in ("🔄", "🎲", "✉️")),
                               what="the bot's three reactions")
    # It waited as the headers said, and never went over the limit.
    assert e2e.discord.rest.rate_limited == over
    times = [c.at for c in e2e.discord.calls("PUT", REACTION, since=since)]
    assert len(times) == 3 and all(b - a >= 0.2 for a, b in itertools.pairwise(times)), times


async def test_a_progress_edit_held_back_by_a_429_never_lands_after_the_final_line(e2e: E2E) -> None:
    alice = await e2e.member("alice")
    await e2e.providers.script("novita", duration_s=3.0)  # long enough for a second progress edit (2.5 s apart)
    job_id = await start(e2e, alice, "a slow fox")
    status = e2e.status_message(job_id)
    assert status is not None
    edits = f"/channels/{e2e.channel.id}/messages/{status.id}"
    await e2e.discord.wait_for(lambda: e2e.discord.calls("PATCH", path=edits), what="the first progress edit")
    e2e.discord.rate_limit_next(1, method="PATCH", route=EDIT, retry_after=2.0)
    limited = await e2e.discord.wait_for(lambda: [c for c in e2e.discord.calls("PATCH", path=edits)
                                                  if c.status == 429], what="a progress edit refused with 429")
    assert (await e2e.result(job_id)).attachments
    await e2e.discord.wait_for(lambda: "✅ done" in status.content, what="the final line")
    # discord.py would send the refused edit again `retry_after` after its 429: look past that moment.
    await asyncio.sleep(max(0.0, limited[0].at + 2.5 - time.monotonic()))
    assert "✅ done" in status.content, status.versions
    assert e2e.discord.calls("PATCH", path=edits)[-1].body["content"] == status.content


async def test_a_dropped_gateway_loses_what_happens_meanwhile_and_the_bot_comes_back(e2e: E2E) -> None:
    alice, bob = await e2e.member("alice"), await e2e.member("bob")
    first = await e2e.result(await start(e2e, alice, "a fox"))
    await e2e.discord.wait_for(lambda: e2e.discord.bot.id in first.reacted("✉️"), what="the bot's reactions")
    gateway = e2e.discord.gateway
    identifies, refused = gateway.stats.identifies, gateway.stats.invalid_sessions

    gateway.hold_connections()  # Discord is unreachable until released
    await e2e.discord.drop_gateway()
    lost = await alice.run_command(e2e.channel, "imagine", prompt="lost in transit")
    await bob.react(first, "🔄")
    assert not lost.delivered
    gateway.release_connections()
    await e2e.discord.wait_for(lambda: gateway.stats.identifies == identifies + 1 and gateway.connected,
                               timeout=30, what="the bot to identify again")
    # Its RESUME was refused (op 9), so it started a new session: what happened meanwhile is gone, as on Discord.
    assert gateway.stats.invalid_sessions == refused + 1
    with pytest.raises(AssertionError, match="did not respond"):
        await lost.acked()

    again = await start(e2e, alice, "back again")
    assert (await e2e.result(again)).attachments
    assert e2e.db.jobs_of(bob.id) == []  # bob's reaction never reached the bot


async def test_a_resumed_session_gets_the_reaction_made_while_disconnected(e2e: E2E) -> None:
    alice, bob = await e2e.member("alice"), await e2e.member("bob")
    first = await e2e.result(await start(e2e, alice, "a fox"))
    await e2e.discord.wait_for(lambda: e2e.discord.bot.id in first.reacted("✉️"), what="the bot's reactions")
    gateway = e2e.discord.gateway
    gateway.accept_resume = True
    resumed = gateway.stats.resumes_accepted

    gateway.hold_connections()
    await e2e.discord.drop_gateway()
    await bob.react(first, "🔄")
    lost = await bob.run_command(e2e.channel, "quota")
    gateway.release_connections()
    await e2e.discord.wait_for(lambda: gateway.stats.resumes_accepted == resumed + 1, timeout=30,
                               what="the bot to resume its session")
    # The reaction is replayed on RESUME and bob's retry runs; the interaction was never delivered.
    retry = await e2e.discord.wait_for(lambda: e2e.db.jobs_of(bob.id), poll=0.1, what="bob's retry")
    assert (await e2e.result(retry[0]["id"])).attachments
    assert not lost.delivered and lost.response is None


@pytest.mark.parametrize(("denied", "named"), [(Perm.ATTACH_FILES, "Attach Files"),
                                               (Perm.READ_MESSAGE_HISTORY, "Read Message History"),
                                               (Perm.SEND_MESSAGES, "Send Messages")])
async def test_without_a_permission_the_result_needs_the_job_is_refused_up_front_and_costs_nothing(
        e2e: E2E, denied: Perm, named: str) -> None:
    # Before issue 18 the job ran and its result went by DM; now the missing permission is named before anything
    # is sent or charged.
    await e2e.quiesce()
    await e2e.guild.set_bot_permissions(e2e.channel, deny=denied)
    alice = await e2e.member("alice")
    before = await e2e.providers.requests()
    run = await alice.run_command(e2e.channel, "imagine", prompt="a fox")
    reply = await run.reply()
    assert reply.ephemeral and f"missing permission: {named}" in reply.content
    assert e2e.db.jobs_of(alice.id) == [] and e2e.db.images_charged(alice.id) == 0
    assert await e2e.providers.requests() == before
    assert [m for m in e2e.channel.live() if not m.ephemeral and "a fox" in m.content] == []
    assert [m for m in alice.dms() if m.attachments] == []


async def test_a_job_that_outlives_its_interaction_token_is_still_delivered(e2e: E2E) -> None:
    e2e.discord.token_ttl_s = 1.0
    alice = await e2e.member("alice")
    await e2e.providers.hold("novita", NOVITA_POLL)  # the job sits at the provider
    run = await alice.run_command(e2e.channel, "imagine", prompt="a slow fox")
    job_id = started_job((await run.reply()).content)
    await asyncio.sleep(max(0.0, run.interaction.created + 1.2 - time.monotonic()))  # the token dies
    await e2e.providers.release("novita")
    result = await e2e.result(job_id)
    assert result.attachments and alice.mention in result.content
    # Nothing used the dead token: everything after the answer went through the channel with the bot's token.
    assert run.interaction.rejected == []


async def test_a_result_whose_answer_is_lost_on_the_way_back_is_posted_once(e2e: E2E) -> None:
    alice = await e2e.member("alice")
    await e2e.providers.hold("novita", NOVITA_POLL)
    job_id = await start(e2e, alice, "a fox")
    hits = e2e.discord.nonce_hits
    # Discord posts the result but the answer is lost (502); discord.py sends it again, with the same nonce.
    e2e.discord.fail_next(502, 0, "Bad Gateway", method="POST", route=MESSAGES, after=True)
    await e2e.providers.release("novita")
    result = await e2e.result(job_id)
    await e2e.job(job_id)
    await e2e.quiesce()
    assert e2e.results_of(job_id) == [result]
    assert e2e.discord.nonce_hits == hits + 1


async def test_sigkill_with_a_job_at_the_provider_then_restart_delivers_it_once(e2e: E2E) -> None:
    alice = await e2e.member("alice")
    await e2e.providers.hold("novita", NOVITA_POLL)
    submits = len((await e2e.providers.stats("novita"))["jobs"])
    job_id = await start(e2e, alice, "a fox")
    await e2e.discord.wait_for(lambda: (e2e.db.job(job_id) or {}).get("handle"), poll=0.1,
                               what="the job to be at the provider")
    await e2e.bot.kill()
    await e2e.providers.release("novita")
    await e2e.bot.start()
    result = await e2e.result(job_id, timeout=30)
    assert result.attachments
    await e2e.quiesce()
    assert e2e.results_of(job_id) == [result]
    assert len((await e2e.providers.stats("novita"))["jobs"]) == submits + 1  # polled again, never resubmitted
    status = e2e.status_message(job_id)
    assert status is not None and "✅ done" in status.content


async def test_sigkill_while_the_result_is_being_posted_then_restart_does_not_post_it_again(e2e: E2E) -> None:
    # Past the nonce's few minutes Discord no longer deduplicates: only the bot's own look back can tell.
    e2e.discord.nonce_window_s = 0.0
    alice = await e2e.member("alice")
    await e2e.providers.hold("novita", NOVITA_POLL)
    job_id = await start(e2e, alice, "a fox")
    posting = e2e.discord.hold_next("POST", path=f"/channels/{e2e.channel.id}/messages")
    await e2e.providers.release("novita")
    await e2e.discord.wait_for(posting.reached.is_set, what="the result post to reach Discord")
    await e2e.bot.kill()
    posting.release()  # Discord posts it; the bot never hears back
    posted = await e2e.discord.wait_for(lambda: e2e.result_message(job_id), what="the result in the channel")
    restarted = time.monotonic()
    await e2e.bot.start()
    await e2e.quiesce()
    assert e2e.results_of(job_id) == [posted]
    assert e2e.discord.calls("GET", MESSAGES, since=restarted), "it looked before posting again"
    job = await e2e.job(job_id)
    assert job["message_id"] == str(posted.id)
    # The restarted bot finished the job's public message and added the reactions members use.
    await e2e.discord.wait_for(lambda: e2e.discord.bot.id in posted.reacted("🔄"), what="the bot's 🔄")
    status = e2e.status_message(job_id)
    assert status is not None and "✅ done" in status.content


async def test_sigkill_while_the_status_message_is_being_posted_then_restart_finishes_it(e2e: E2E) -> None:
    alice = await e2e.member("alice")
    posting = e2e.discord.hold_next("POST", path=f"/channels/{e2e.channel.id}/messages")
    await alice.run_command(e2e.channel, "imagine", prompt="a fox")
    await e2e.discord.wait_for(posting.reached.is_set, what="the status message to reach Discord")
    await e2e.bot.kill()  # the job is recorded; its status message is posted, but its id is never stored
    posting.release()
    [job] = await e2e.discord.wait_for(lambda: e2e.db.jobs_of(alice.id), poll=0.1, what="the recorded job")
    status = await e2e.discord.wait_for(lambda: e2e.status_message(job["id"]), what="the status message")
    await e2e.bot.start()
    result = await e2e.result(job["id"], timeout=30)
    await e2e.discord.wait_for(lambda: "✅ done" in status.content, what="the status message to be finished")
    assert result.reference is not None and result.reference["message_id"] == str(status.id)
    await e2e.quiesce()
    assert [m.id for m in e2e.channel.live() if not m.ephemeral] == [status.id, result.id]
