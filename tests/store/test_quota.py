"""Quotas: the check and the insert are one transaction, across coroutines, connections and processes."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from bot.errors import QuotaError
from bot.store import JobState, QuotaLimits, Subject, open_store
from bot.store.base import JobStore
from tests.store.helpers import ALICE, BOB, DEFAULTS, GENEROUS, NOW, new_job

REPO = Path(__file__).resolve().parents[2]


def admitted(results: Sequence[object]) -> int:
    """How many attempts got a job; every refusal must be the daily quota's."""
    for result in results:
        if isinstance(result, BaseException):
            assert isinstance(result, QuotaError) and result.kind == "daily", result
    return sum(not isinstance(r, BaseException) for r in results)


async def test_fifty_at_once_on_one_store_admit_exactly_the_quota(store: JobStore) -> None:
    await store.set_limit(ALICE.scope, "member", ALICE.user_id, daily=5, concurrent=1000)
    results = await asyncio.gather(
        *(store.create_job(new_job(ALICE), defaults=DEFAULTS, now=NOW) for _ in range(50)),
        return_exceptions=True)
    assert admitted(results) == 5
    assert len(await store.list_jobs(ALICE, limit=100)) == 5


async def test_fifty_at_once_over_five_connections_admit_exactly_the_quota(store_url: str) -> None:
    stores = [await open_store(store_url) for _ in range(5)]
    try:
        await stores[0].set_limit(ALICE.scope, "member", ALICE.user_id, daily=5, concurrent=None)
        results = await asyncio.gather(
            *(s.create_job(new_job(ALICE), defaults=GENEROUS, now=NOW) for s in stores for _ in range(10)),
            return_exceptions=True)
        assert admitted(results) == 5
        assert len(await stores[1].list_jobs(ALICE, limit=100)) == 5
    finally:
        for s in stores:
            await s.close()


@pytest.mark.parametrize(("processes", "attempts", "daily"), [(5, 10, 5), (8, 4, 3)])
async def test_many_processes_at_once_admit_exactly_the_quota(store_url: str, tmp_path: Path, processes: int,
                                                              attempts: int, daily: int) -> None:
    url = store_url
    store = await open_store(url)
    await store.set_limit(ALICE.scope, "member", ALICE.user_id, daily=daily, concurrent=None)
    go = tmp_path / "go"
    workers = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.store.quota_worker", url, str(attempts), str(go),
        cwd=REPO, stdout=asyncio.subprocess.PIPE) for _ in range(processes)]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert await asyncio.wait_for(worker.stdout.readline(), 30) == b"ready\n"
        go.touch()  # every process has its connection open: let them all race now
        outputs = [await asyncio.wait_for(w.communicate(), 30) for w in workers]
        assert [w.returncode for w in workers] == [0] * processes
        assert sum(int(out) for out, _ in outputs) == daily
        assert len(await store.list_jobs(ALICE, limit=100)) == daily
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
        await store.close()


async def test_a_job_costs_its_image_count(store: JobStore) -> None:
    limits = QuotaLimits(daily=10, concurrent=100)
    for _ in range(2):
        await store.create_job(new_job(cost=4), defaults=limits, now=NOW)
    assert (await store.usage(ALICE, defaults=limits, now=NOW)).used_today == 8
    with pytest.raises(QuotaError) as caught:
        await store.create_job(new_job(cost=4), defaults=limits, now=NOW)
    assert (caught.value.kind, caught.value.limit, caught.value.used) == ("daily", 10, 8)
    assert str(caught.value) == ("This job needs 4 images, but you have only 2 of your 10 images left today; "
                                 "the quota resets at 00:00 UTC (in 12 h).")
    await store.create_job(new_job(cost=2), defaults=limits, now=NOW)
    usage = await store.usage(ALICE, defaults=limits, now=NOW)
    assert (usage.used_today, usage.remaining_today) == (10, 0)


async def test_the_daily_refusal_names_the_quota_and_when_it_resets(store: JobStore) -> None:
    now = datetime(2025, 3, 10, 20, 48, tzinfo=UTC)
    for _ in range(25):
        job = await store.create_job(new_job(), defaults=DEFAULTS, now=now)
        await store.update_job(job.id, now=now, state=JobState.SUCCEEDED)
    with pytest.raises(QuotaError) as caught:
        await store.create_job(new_job(), defaults=DEFAULTS, now=now)
    assert str(caught.value) == ("You have used 25 of your 25 images today; the quota resets at 00:00 UTC "
                                 "(in 3 h 12 min).")
    assert caught.value.resets_at == datetime(2025, 3, 11, tzinfo=UTC)
    # Someone else's quota is their own.
    await store.create_job(new_job(BOB), defaults=DEFAULTS, now=now)


async def test_refunded_jobs_do_not_count(store: JobStore) -> None:
    limits = QuotaLimits(daily=2, concurrent=100)
    first = await store.create_job(new_job(), defaults=limits, now=NOW)
    await store.create_job(new_job(), defaults=limits, now=NOW)
    await store.update_job(first.id, now=NOW, state=JobState.FAILED)
    assert await store.refund(first.id, now=NOW)
    await store.create_job(new_job(), defaults=limits, now=NOW)
    assert (await store.usage(ALICE, defaults=limits, now=NOW)).used_today == 2


async def test_jobs_running_at_once_are_limited(store: JobStore) -> None:
    jobs = [await store.create_job(new_job(), defaults=DEFAULTS, now=NOW) for _ in range(3)]
    with pytest.raises(QuotaError) as caught:
        await store.create_job(new_job(), defaults=DEFAULTS, now=NOW)
    assert (caught.value.kind, caught.value.limit, caught.value.used) == ("concurrent", 3, 3)
    assert str(caught.value) == ("You already have 3 jobs running; the limit is 3. "
                                 "Wait for one to finish or /cancel one.")
    # Every non-terminal state holds a slot; a finished job gives it back.
    await store.update_job(jobs[0].id, now=NOW, state=JobState.SUBMITTING)
    await store.update_job(jobs[1].id, now=NOW, state=JobState.FETCHING)
    with pytest.raises(QuotaError):
        await store.create_job(new_job(), defaults=DEFAULTS, now=NOW)
    await store.update_job(jobs[2].id, now=NOW, state=JobState.CANCELLED)
    await store.create_job(new_job(), defaults=DEFAULTS, now=NOW)
    assert (await store.usage(ALICE, defaults=DEFAULTS, now=NOW)).in_flight == 3


async def test_command_line_users_are_not_told_to_use_a_slash_command(store: JobStore) -> None:
    me = Subject.cli("me")
    limits = QuotaLimits(daily=10, concurrent=1)
    await store.create_job(new_job(me), defaults=limits, now=NOW)
    with pytest.raises(QuotaError, match=r"^You already have 1 job running; the limit is 1\. Wait for one "
                                         r"to finish or cancel one\.$"):
        await store.create_job(new_job(me), defaults=limits, now=NOW)


async def test_limits_resolve_member_then_largest_role_then_scope_then_settings(store: JobStore) -> None:
    scope = "guild:1"
    await store.set_limit(scope, "scope", "", daily=10, concurrent=None)
    await store.set_limit(scope, "role", "r-artist", daily=15, concurrent=2)
    await store.set_limit(scope, "role", "r-patron", daily=40, concurrent=None)
    await store.set_limit(scope, "role", "r-muted", daily=1, concurrent=None)
    await store.set_limit(scope, "member", "100", daily=None, concurrent=5)
    await store.set_limit("guild:2", "role", "r-artist", daily=99, concurrent=99)  # another guild's role

    async def limits(subject: Subject) -> tuple[int, int]:
        usage = await store.usage(subject, defaults=DEFAULTS, now=NOW)
        return usage.limits.daily, usage.limits.concurrent

    cases = {
        # member sets concurrent only; daily falls through to the largest role
        Subject.member(1, 100, ("r-artist", "r-patron")): (40, 5),
        # no member row: both columns from roles, concurrent from the only role that sets it
        Subject.member(1, 200, ("r-artist", "r-patron")): (40, 2),
        # a role allowance applies even when it is below the guild default
        Subject.member(1, 300, ("r-muted",)): (1, 3),
        # roles that set nothing: the guild default for daily, the settings for concurrent
        Subject.member(1, 400, ("r-unknown",)): (10, 3),
        Subject.member(1, 500): (10, 3),
        # another guild: only its own rows apply
        Subject.member(2, 100, ("r-patron",)): (25, 3),
        Subject.member(2, 100, ("r-artist",)): (99, 99),
        Subject.cli("100"): (25, 3),
    }
    for subject, expected in cases.items():
        assert await limits(subject) == expected, subject

    await store.clear_limit(scope, "member", "100")
    assert await limits(Subject.member(1, 100, ("r-artist", "r-patron"))) == (40, 2)
    await store.set_limit(scope, "scope", "", daily=None, concurrent=None)  # sets nothing: removes the row
    assert await limits(Subject.member(1, 500)) == (25, 3)
    # Overwriting a row replaces both columns.
    await store.set_limit(scope, "role", "r-artist", daily=3, concurrent=None)
    assert await limits(Subject.member(1, 200, ("r-artist",))) == (3, 3)


async def test_limits_are_enforced_from_the_override(store: JobStore) -> None:
    await store.set_limit("guild:1", "role", "r-trial", daily=1, concurrent=None)
    trial = Subject.member(1, 100, ("r-trial",))
    await store.create_job(new_job(trial), defaults=DEFAULTS, now=NOW)
    with pytest.raises(QuotaError, match="used 1 of your 1 image today"):
        await store.create_job(new_job(trial), defaults=DEFAULTS, now=NOW)


@pytest.mark.parametrize(("scope", "kind", "subject_id", "daily", "concurrent"), [
    ("guild:1", "everyone", "", 1, 1),
    ("guild:1", "scope", "100", 1, 1),
    ("guild:1", "member", "", 1, 1),
    ("", "member", "100", 1, 1),
    ("guild:1", "member", "100", -1, 1),
    ("guild:1", "member", "100", 1, -1),
])
async def test_nonsense_limits_are_refused(store: JobStore, scope: str, kind: str, subject_id: str,
                                           daily: int, concurrent: int) -> None:
    with pytest.raises(ValueError):
        await store.set_limit(scope, kind, subject_id, daily=daily, concurrent=concurrent)


async def test_usage_resets_at_utc_midnight(store: JobStore) -> None:
    limits = QuotaLimits(daily=2, concurrent=100)
    evening = datetime(2025, 3, 10, 23, 30, tzinfo=UTC)
    last_moment = datetime(2025, 3, 10, 23, 59, 59, 999999, tzinfo=UTC)
    midnight = datetime(2025, 3, 11, tzinfo=UTC)
    for _ in range(2):
        await store.create_job(new_job(), defaults=limits, now=evening)
    with pytest.raises(QuotaError) as caught:
        await store.create_job(new_job(), defaults=limits, now=last_moment)
    assert str(caught.value).endswith("the quota resets at 00:00 UTC (in 1 min).")
    assert caught.value.resets_at == midnight

    usage = await store.usage(ALICE, defaults=limits, now=midnight)
    assert (usage.used_today, usage.resets_at) == (0, midnight + timedelta(days=1))
    await store.create_job(new_job(), defaults=limits, now=midnight)
    # Asking about the previous day still sees that day's two jobs, not the new one.
    assert (await store.usage(ALICE, defaults=limits, now=evening)).used_today == 2


async def test_the_day_is_the_utc_day_whatever_the_offset_of_now(store: JobStore) -> None:
    limits = QuotaLimits(daily=2, concurrent=100)
    sydney = timezone(timedelta(hours=11))
    await store.create_job(new_job(), defaults=limits, now=datetime(2025, 3, 10, 1, 0, tzinfo=UTC))
    # 09:30 on the 11th in Sydney is 22:30 on the 10th in UTC: the same quota day.
    late = datetime(2025, 3, 11, 9, 30, tzinfo=sydney)
    usage = await store.usage(ALICE, defaults=limits, now=late)
    assert (usage.used_today, usage.resets_at) == (1, datetime(2025, 3, 11, tzinfo=UTC))
