"""Jobs: creation, reads, updates, compare-and-set transitions, refunds, listings and pruning."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from bot.providers.status import RemoteHandle
from bot.store import JobState, Origin, SqliteJobStore, StoredOutput, Subject
from bot.store.base import JobStore
from tests.store.helpers import ALICE, BOB, DEFAULTS, GENEROUS, INTEGRITY_ERRORS, NOW, new_job

PARIS = timezone(timedelta(hours=1))


def output(name: str, path: str | None = "keep") -> StoredOutput:
    return StoredOutput(sha256=name * 64, mime="image/png", width=1024, height=768,
                        provider_url=f"https://cdn.example/{name}.png",
                        path=f"outputs/{name}.png" if path == "keep" else path)


async def test_a_new_job_is_pending_and_complete(store: JobStore) -> None:
    new = new_job(cost=2, channel_id=555, deadline_s=90.0,
                  request={"prompt": "un phare au crépuscule 🌅", "images": [{"sha256": "00" * 32}]})
    job = await store.create_job(new, defaults=DEFAULTS, now=NOW)
    assert job.id > 0
    assert (job.subject, job.origin, job.operation, job.provider) == (ALICE, Origin.DISCORD, "imagine", "fal")
    assert job.request == new.request
    assert (job.state, job.attempts, job.cost, job.refunded, job.charged) == (JobState.PENDING, 0, 2, False, None)
    assert (job.created_at, job.updated_at, job.deadline_at) == (NOW, NOW, NOW + timedelta(seconds=90))
    assert job.channel_id == "555"
    assert (job.outputs, job.extra, job.handle, job.lease_owner) == ((), {}, None, None)
    assert await store.get_job(job.id) == job
    assert await store.get_job(job.id + 1) is None


async def test_child_jobs_point_at_their_parent(store: JobStore) -> None:
    parent = await store.create_job(new_job(), defaults=GENEROUS, now=NOW)
    child = await store.create_job(new_job(parent_job_id=parent.id), defaults=GENEROUS, now=NOW)
    assert child.parent_job_id == parent.id
    with pytest.raises(INTEGRITY_ERRORS):
        await store.create_job(new_job(parent_job_id=9999), defaults=GENEROUS, now=NOW)


async def test_every_updatable_field_round_trips(store: JobStore) -> None:
    job = await store.create_job(new_job(), defaults=DEFAULTS, now=NOW)
    later = NOW + timedelta(seconds=42)
    fields = {
        "state": JobState.RUNNING,
        "handle": RemoteHandle(provider="fal", remote_id="req-1", operation="imagine", extra={"model": "fal-ai/flux"}),
        "queue_position": 3,
        "progress": 0.25,
        "attempts": 2,
        "outputs": (output("a"), output("b", path=None)),
        "seed": 2**64 - 1,  # unsigned 64-bit seeds exist; SQLite integers stop at 2**63 - 1
        "error_code": "provider_unavailable",
        "error_message": "fal: 503",
        "charged": False,
        "message_id": 123456789012345678,
        "submitted_at": later,
        "finished_at": None,
        "channel_id": "777",
        "extra": {"nsfw_checked": True, "note": "é"},
    }
    updated = await store.update_job(job.id, now=later, **fields)
    assert updated == await store.get_job(job.id)
    assert updated.updated_at == later and updated.created_at == NOW
    assert updated.state is JobState.RUNNING
    assert updated.handle == fields["handle"]
    assert (updated.queue_position, updated.progress, updated.attempts) == (3, 0.25, 2)
    assert updated.outputs == fields["outputs"]
    assert updated.seed == 2**64 - 1
    assert (updated.error_code, updated.error_message, updated.charged) == ("provider_unavailable", "fal: 503",
                                                                            False)
    assert (updated.message_id, updated.channel_id) == ("123456789012345678", "777")
    assert updated.submitted_at == later and updated.finished_at is None
    assert updated.extra == fields["extra"]
    cleared = await store.update_job(job.id, now=later, handle=None, seed=None, charged=None, progress=None)
    assert (cleared.handle, cleared.seed, cleared.charged, cleared.progress) == (None, None, None, None)


async def test_datetimes_come_back_as_aware_utc_and_are_stored_in_one_format(
        sqlite_store: SqliteJobStore, db_path: Path) -> None:
    store = sqlite_store  # reads the SQLite file itself
    job = await store.create_job(new_job(), defaults=DEFAULTS, now=datetime(2025, 3, 10, 13, 0, tzinfo=PARIS))
    job = await store.update_job(job.id, now=NOW, state=JobState.FAILED, submitted_at=NOW)
    await store.claim(job.id, "w", host="h", pid=1, now=NOW, lease_s=30)
    job = await store.get_job(job.id)  # type: ignore[assignment]
    assert job is not None
    for value in (job.created_at, job.updated_at, job.deadline_at, job.submitted_at, job.finished_at,
                  job.lease_expires_at):
        assert value is not None and value.tzinfo is UTC
    assert job.created_at == datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
    with sqlite3.connect(db_path) as conn:
        raw = conn.execute("SELECT created_at, finished_at, lease_expires_at FROM jobs").fetchone()
    for text in raw:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", text), text


async def test_naive_datetimes_are_refused(store: JobStore) -> None:
    naive = datetime(2025, 3, 10, 12, 0)
    with pytest.raises(ValueError, match="naive"):
        await store.create_job(new_job(), defaults=DEFAULTS, now=naive)
    job = await store.create_job(new_job(), defaults=DEFAULTS, now=NOW)
    with pytest.raises(ValueError, match="naive"):
        await store.update_job(job.id, now=NOW, submitted_at=naive)


async def test_update_refuses_unknown_fields_and_jobs(store: JobStore) -> None:
    job = await store.create_job(new_job(), defaults=DEFAULTS, now=NOW)
    for forbidden in ("nonsense", "cost", "refunded", "lease_owner", "id", "updated_at"):
        with pytest.raises(ValueError, match="unknown job field"):
            await store.update_job(job.id, now=NOW, **{forbidden: 1})
    with pytest.raises(ValueError, match="unknown job field"):
        await store.update_job(job.id, now=NOW, state=JobState.RUNNING, **{"state = 'x'; --": 1})
    assert await store.get_job(job.id) == job  # nothing was written by the refused calls
    with pytest.raises(KeyError):
        await store.update_job(job.id + 100, now=NOW, attempts=1)
    with pytest.raises(ValueError):
        await store.update_job(job.id, now=NOW, state="exploded")
    with pytest.raises(TypeError):
        await store.update_job(job.id, now=NOW, outputs=[{"sha256": "x"}])


async def test_finishing_records_finished_at_once(store: JobStore) -> None:
    job = await store.create_job(new_job(), defaults=DEFAULTS, now=NOW)
    done = await store.update_job(job.id, now=NOW + timedelta(minutes=1), state=JobState.SUCCEEDED)
    assert done.finished_at == NOW + timedelta(minutes=1)
    again = await store.update_job(job.id, now=NOW + timedelta(minutes=5), state=JobState.SUCCEEDED)
    assert again.finished_at == NOW + timedelta(minutes=1)
    explicit = await store.create_job(new_job(), defaults=DEFAULTS, now=NOW)
    failed = await store.update_job(explicit.id, now=NOW, state=JobState.FAILED, finished_at=NOW - timedelta(1))
    assert failed.finished_at == NOW - timedelta(1)


async def test_a_transition_loses_when_the_state_moved_on(store: JobStore) -> None:
    job = await store.create_job(new_job(), defaults=DEFAULTS, now=NOW)
    sending = await store.transition(job.id, JobState.SUBMITTING, now=NOW, attempts=1)
    assert sending is not None and sending.state is JobState.SUBMITTING and sending.attempts == 1
    running = await store.transition(job.id, JobState.RUNNING, now=NOW)
    assert running is not None and running.state is JobState.RUNNING
    # The member cancels while the runner is about to record the provider's result.
    cancelled = await store.transition(job.id, JobState.CANCELLED, now=NOW)
    assert cancelled is not None and cancelled.state is JobState.CANCELLED
    late = await store.transition(job.id, JobState.FETCHING, now=NOW + timedelta(seconds=1), progress=1.0)
    assert late is None
    assert await store.get_job(job.id) == cancelled  # the loser wrote nothing, not even updated_at
    with pytest.raises(KeyError):
        await store.transition(job.id + 100, JobState.SUBMITTING, now=NOW)
    with pytest.raises(ValueError):
        await store.transition(job.id, JobState.RUNNING, now=NOW, state=JobState.RUNNING)


async def test_racing_transitions_have_one_winner(store: JobStore) -> None:
    job = await store.create_job(new_job(), defaults=DEFAULTS, now=NOW)
    results = await asyncio.gather(*(
        store.transition(job.id, JobState.SUBMITTING, now=NOW, attempts=i)
        for i in range(10)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert await store.get_job(job.id) == winners[0]


async def test_refund_happens_once(store: JobStore) -> None:
    job = await store.create_job(new_job(cost=3), defaults=DEFAULTS, now=NOW)
    await store.update_job(job.id, now=NOW, state=JobState.FAILED)
    results = await asyncio.gather(*(store.refund(job.id, now=NOW) for _ in range(10)))
    assert results.count(True) == 1
    assert not await store.refund(job.id, now=NOW)
    refreshed = await store.get_job(job.id)
    assert refreshed is not None and refreshed.refunded
    assert (await store.usage(ALICE, defaults=DEFAULTS, now=NOW)).used_today == 0
    with pytest.raises(KeyError):
        await store.refund(job.id + 100, now=NOW)


async def test_listings_are_newest_first_and_filtered(store: JobStore) -> None:
    ids = []
    for minute, subject in enumerate((ALICE, BOB, ALICE, Subject.cli("carol"), ALICE)):
        job = await store.create_job(new_job(subject), defaults=GENEROUS, now=NOW + timedelta(minutes=minute))
        ids.append(job.id)
    await store.update_job(ids[2], now=NOW, state=JobState.SUCCEEDED)
    assert [j.id for j in await store.list_jobs()] == ids[::-1]
    assert [j.id for j in await store.list_jobs(ALICE)] == [ids[4], ids[2], ids[0]]
    assert [j.id for j in await store.list_jobs(ALICE, limit=2)] == [ids[4], ids[2]]
    assert [j.id for j in await store.list_jobs(ALICE, states=[JobState.PENDING])] == [ids[4], ids[0]]
    assert [j.id for j in await store.list_jobs(states=[JobState.SUCCEEDED, JobState.FAILED])] == [ids[2]]
    assert await store.list_jobs(BOB, states=[]) == []
    assert await store.list_jobs(limit=-1) == []
    # Roles are not part of who owns a job.
    assert [j.id for j in await store.list_jobs(Subject.member(1, 200, ("r1",)))] == [ids[1]]


async def test_pruning_finds_old_local_files_and_keeps_the_history(store: JobStore) -> None:
    async def finished(days_ago: float, state: JobState, outputs: tuple[StoredOutput, ...]) -> int:
        job = await store.create_job(new_job(), defaults=GENEROUS, now=NOW)
        await store.update_job(job.id, now=NOW, state=state, outputs=outputs,
                               finished_at=NOW - timedelta(days=days_ago))
        return job.id

    old = await finished(10, JobState.SUCCEEDED, (output("a"), output("b", path=None), output("c")))
    await finished(1, JobState.SUCCEEDED, (output("d"),))  # recent: kept
    await finished(10, JobState.FAILED, ())  # nothing to prune
    cancelled_late = await finished(8, JobState.CANCELLED, (output("e"),))
    running = await store.create_job(new_job(), defaults=GENEROUS, now=NOW - timedelta(days=30))
    await store.update_job(running.id, now=NOW - timedelta(days=30), state=JobState.FETCHING,
                           outputs=(output("f"),))  # not finished: never pruned, however old

    cutoff = NOW - timedelta(days=7)
    assert await store.prunable_outputs(finished_before=cutoff) == [
        (old, output("a")), (old, output("c")), (cancelled_late, output("e"))]

    await store.mark_outputs_pruned(old)
    job = await store.get_job(old)
    assert job is not None
    assert [o.path for o in job.outputs] == [None, None, None]
    assert [o.sha256 for o in job.outputs] == ["a" * 64, "b" * 64, "c" * 64]
    assert job.outputs[0].provider_url == "https://cdn.example/a.png"
    assert await store.prunable_outputs(finished_before=cutoff) == [(cancelled_late, output("e"))]
    with pytest.raises(KeyError):
        await store.mark_outputs_pruned(9999)


async def test_guild_settings(store: JobStore) -> None:
    assert await store.guild_settings(1) == {}
    await store.set_guild_setting(1, "channels", [10, 11], now=NOW)
    await store.set_guild_setting(1, "channels", [12], now=NOW)
    await store.set_guild_setting("1", "nsfw", False, now=NOW)
    await store.set_guild_setting(2, "nsfw", True, now=NOW)
    assert await store.guild_settings(1) == {"channels": [12], "nsfw": False}
    assert await store.clear_guild_setting(1, "nsfw")
    assert not await store.clear_guild_setting(1, "nsfw")
    assert await store.guild_settings(1) == {"channels": [12]}
