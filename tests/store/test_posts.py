"""A job's public identity and its Discord posts: tokens unique per job, one unsettled post per kind until Discord's
answer is recorded, nonces within Discord's 25 characters."""

from __future__ import annotations

from bot.store.base import JobStore
from bot.store.models import PostKind
from tests.store.helpers import DEFAULTS, GENEROUS, NOW, new_job


async def test_every_job_gets_its_own_random_token(store: JobStore) -> None:
    jobs = [await store.create_job(new_job(), defaults=GENEROUS, now=NOW) for _ in range(50)]
    tokens = [j.token for j in jobs]
    assert len(set(tokens)) == 50 and all(len(t) == 20 for t in tokens)
    assert (await store.job_by_token(tokens[7])) == jobs[7]
    assert await store.job_by_token("0" * 20) is None


async def test_a_post_stays_open_until_recorded_then_a_repost_is_a_new_post(store: JobStore) -> None:
    job = await store.create_job(new_job(), defaults=DEFAULTS, now=NOW)
    first, new = await store.open_post(job.id, PostKind.RESULT, channel_id=55)
    assert new and first.message_id is None and not first.settled
    again, new_again = await store.open_post(job.id, PostKind.RESULT, channel_id=55)
    # The same post, with the same nonce: a second attempt may find what the first one posted.
    assert (again, new_again) == (first, False)
    assert len(first.nonce) <= 25 and first.nonce.startswith("r")

    recorded = await store.record_post(first.id, message_id=900)
    assert recorded.message_id == "900" and recorded.settled and recorded.channel_id == "55"
    assert (await store.get_job(job.id)).message_id == "900"  # type: ignore[union-attr]
    assert (await store.job_by_message(900)) is not None

    repost, fresh = await store.open_post(job.id, PostKind.RESULT, channel_id=55)
    assert fresh and repost.id != first.id and repost.nonce != first.nonce


async def test_a_dm_or_a_note_never_becomes_the_jobs_public_message(store: JobStore) -> None:
    job = await store.create_job(new_job(), defaults=DEFAULTS, now=NOW)
    dm, _ = await store.open_post(job.id, PostKind.DM, channel_id=None)
    await store.record_post(dm.id, message_id=77, channel_id=66, in_guild=False)
    result, _ = await store.open_post(job.id, PostKind.RESULT, channel_id=55)
    await store.record_post(result.id, message_id=None, note="no permission and DMs closed")
    assert (await store.get_job(job.id)).message_id is None  # type: ignore[union-attr]
    assert [(p.kind, p.message_id, p.note) for p in await store.posts_of(job.id)] == \
        [("dm", "77", None), ("result", None, "no permission and DMs closed")]
    assert (await store.post_by_message(77)).kind is PostKind.DM  # type: ignore[union-attr]
