"""What members keep for themselves, for every store: preferences, and forgetting a member — the semantics a new
store must mirror (JobStore.member_prefs, save_member_prefs, forget_member)."""

from __future__ import annotations

from bot.store.base import JobStore
from bot.store.models import FORGOTTEN_USER, JobState, MemberPrefs, PhotoRef, PostKind, Subject
from tests.store.helpers import ALICE, BOB, GENEROUS, NOW, new_job

SHARED, HERS, PHOTO = "a" * 64, "b" * 64, "c" * 64


def ref(sha: str) -> dict[str, object]:
    return {"sha256": sha, "mime": "image/png", "width": 100, "height": 100, "filename": "x.png"}


def edit(*shas: str) -> dict[str, object]:
    return {"operation": "edit", "images": [ref(s) for s in shas], "prompt": "her secret prompt"}


async def test_preferences_default_then_saved_whole_and_overwritten(store: JobStore) -> None:
    assert await store.member_prefs("100") == MemberPrefs(user_id="100")
    photo = PhotoRef(sha256=PHOTO, mime="image/jpeg", width=640, height=480, filename="me.jpg")
    saved = MemberPrefs(user_id="100", size="landscape_16_9", count=3, private_delivery=True, photo=photo)
    await store.save_member_prefs(saved, now=NOW)
    assert await store.member_prefs("100") == saved
    await store.save_member_prefs(MemberPrefs(user_id="100", count=2), now=NOW)
    assert await store.member_prefs("100") == MemberPrefs(user_id="100", count=2)
    assert await store.member_prefs("200") == MemberPrefs(user_id="200")


async def test_forget_refuses_while_a_job_runs_then_anonymises_and_names_the_images_to_delete(
        store: JobStore) -> None:
    other_guild = Subject.member(guild_id=2, user_id=100)
    hers = await store.create_job(new_job(ALICE, operation="edit", request=edit(SHARED, HERS)), defaults=GENEROUS,
                                  now=NOW)
    elsewhere = await store.create_job(new_job(other_guild), defaults=GENEROUS, now=NOW)
    bobs = await store.create_job(new_job(BOB, operation="edit", request=edit(SHARED)), defaults=GENEROUS, now=NOW)
    await store.save_member_prefs(MemberPrefs(user_id="100", photo=PhotoRef(PHOTO, "image/png", 9, 9)), now=NOW)
    await store.set_limit(ALICE.scope, "member", "100", daily=7, concurrent=None)
    post, _ = await store.open_post(hers.id, PostKind.DM, channel_id=None)
    await store.record_post(post.id, message_id=5, channel_id=6, in_guild=False)

    assert await store.forget_member("100", now=NOW) is None, "a job of hers is still pending"
    assert (await store.get_job(hers.id)).subject.user_id == "100"  # type: ignore[union-attr]

    for job in (hers, elsewhere, bobs):
        await store.transition(job.id, JobState.CANCELLED, now=NOW)
    done = await store.forget_member("100", now=NOW)
    assert done is not None and done.jobs == 2 and done.posts == 1 and done.prefs
    assert set(done.blobs) == {HERS, PHOTO}, "the shared image is Bob's job's too"

    forgotten = await store.get_job(hers.id)
    assert forgotten is not None and forgotten.subject.user_id == FORGOTTEN_USER
    assert forgotten.request == {"operation": "edit"} and forgotten.outputs == () and forgotten.token == hers.token
    assert forgotten.subject.scope == ALICE.scope and forgotten.cost == hers.cost
    assert await store.posts_of(hers.id) == []
    assert await store.member_prefs("100") == MemberPrefs(user_id="100")
    assert (await store.get_job(bobs.id)).request == edit(SHARED)  # type: ignore[union-attr]
    assert await store.list_jobs(ALICE, limit=10) == [] and await store.list_jobs(other_guild, limit=10) == []
    assert (await store.usage(ALICE, defaults=GENEROUS, now=NOW)).limits.daily == GENEROUS.daily  # override gone


async def test_child_jobs_are_the_jobs_made_from_one_oldest_first(store: JobStore) -> None:
    parent = await store.create_job(new_job(), defaults=GENEROUS, now=NOW)
    first = await store.create_job(new_job(BOB, parent_job_id=parent.id), defaults=GENEROUS, now=NOW)
    await store.create_job(new_job(), defaults=GENEROUS, now=NOW)  # unrelated
    second = await store.create_job(new_job(parent_job_id=parent.id), defaults=GENEROUS, now=NOW)
    assert [j.id for j in await store.child_jobs(parent.id)] == [first.id, second.id]
    assert await store.child_jobs(first.id) == []


async def test_images_referenced_by_any_job_or_saved_photo(store: JobStore) -> None:
    await store.create_job(new_job(ALICE, operation="edit", request=edit(SHARED)), defaults=GENEROUS, now=NOW)
    await store.save_member_prefs(MemberPrefs(user_id="200", photo=PhotoRef(PHOTO, "image/png", 9, 9)), now=NOW)
    assert await store.images_referenced([SHARED, HERS, PHOTO]) == {SHARED, PHOTO}
    assert await store.images_referenced([]) == set()
