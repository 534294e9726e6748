"""The runner in-process against the fal fake and a real SQLite file."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bot.app import open_app
from bot.errors import InputError, QuotaError
from bot.fairqueue import FairGate
from bot.jobs import RunnerConfig
from bot.operations import ImagineRequest
from bot.store.models import Job, JobState, Origin, Subject
from tests.fakes.base import JobScript
from tests.runner.conftest import Harness, RecordingDelivery, kept, settings_for, slots_in_use

ALICE = Subject.member(1, "alice")
BOB = Subject.member(1, "bob")


async def settle(h: Harness, job_id: int, timeout: float = 10) -> Job:
    deadline = time.monotonic() + timeout
    while True:
        await h.app.runner.wait(job_id)
        job = await h.app.store.get_job(job_id)
        assert job is not None
        if job.state.terminal and await h.app.store.is_delivered(job_id, "discord"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} stuck in {job.state}"
        await asyncio.sleep(0.02)


async def test_a_job_runs_to_delivery_with_progress_events(harness: Harness) -> None:
    h = harness
    h.fal.script = JobScript(queue_polls=2, running_polls=2)
    job = await h.app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="a fox", count=2, seed=3))
    done = await settle(h, job.id)
    assert done.state is JobState.SUCCEEDED and len(done.outputs) == 2 and done.charged is True
    assert [o.sha256 for o in h.delivery.delivered[0].outputs] == [o.sha256 for o in done.outputs]
    for output in done.outputs:
        assert output.path is not None and await h.app.blobs.get(output.sha256) in h.fal.files.values()
    kinds = [e.kind for e in h.events if e.job.id == job.id]
    assert "progress" in kinds and kinds[-1] == "finished"
    usage = await h.app.runner.usage(ALICE)
    assert usage.used_today == 2


async def test_a_failed_job_is_refunded_and_still_delivered_with_its_reason(harness: Harness) -> None:
    h = harness
    h.fal.script = JobScript(outcome="fail", fail_reason="Content policy violation")
    job = await h.app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="x", count=3))
    done = await settle(h, job.id)
    assert done.state is JobState.FAILED and "Content policy violation" in (done.error_message or "")
    assert done.refunded and (await h.app.runner.usage(ALICE)).used_today == 0
    assert h.delivery.delivered[0].id == job.id


async def test_cancel_while_waiting_for_a_slot_sends_nothing(harness: Harness) -> None:
    h = harness
    h.fal.script = JobScript(outcome="never")
    gate = h.app.runner.gates["fal"]
    gate.capacity = 1
    first = await h.app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="1"))
    second = await h.app.runner.create(BOB, Origin.DISCORD, ImagineRequest(prompt="2"))
    deadline = time.monotonic() + 5
    while gate.position(second.id) != 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    cancelled = await h.app.runner.cancel(second.id, BOB)
    assert cancelled.state is JobState.CANCELLED and cancelled.refunded
    assert len(h.fal.calls("POST")) == 1
    # Running at the provider: cancelled there too.
    await h.app.runner.cancel(first.id, ALICE)
    assert len(h.fal.calls("PUT", "/cancel")) == 1
    assert (await settle(h, first.id)).state is JobState.CANCELLED
    assert {j.id for j in h.delivery.delivered} == {first.id, second.id}


async def test_only_the_owner_can_cancel(harness: Harness) -> None:
    h = harness
    h.fal.script = JobScript(outcome="never")
    job = await h.app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="1"))
    with pytest.raises(Exception, match="no job"):
        await h.app.runner.cancel(job.id, BOB)
    await h.app.runner.cancel(job.id, ALICE)


async def test_a_stuck_job_is_cancelled_and_failed_at_its_deadline(harness: Harness) -> None:
    h = harness
    h.fal.script = JobScript(outcome="never")
    h.app.runner.config.deadlines = {"imagine": 0.5}
    job = await h.app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="slow"))
    done = await settle(h, job.id)
    assert done.state is JobState.FAILED and done.error_code == "deadline"
    assert "deadline" in (done.error_message or "") and done.refunded
    assert len(h.fal.calls("PUT", "/cancel")) == 1


async def test_retry_keeps_the_seed_and_vary_changes_it_for_another_member(harness: Harness) -> None:
    h = harness
    original = await settle(h, (await h.app.runner.create(ALICE, Origin.DISCORD,
                                                          ImagineRequest(prompt="p", seed=42))).id)
    retry = await settle(h, (await h.app.runner.rerun(original.id, BOB, vary=False)).id)
    vary = await settle(h, (await h.app.runner.rerun(original.id, BOB, vary=True)).id)
    assert retry.request["seed"] == 42 and retry.parent_job_id == original.id
    assert vary.request["seed"] != 42 and vary.request["prompt"] == "p"
    assert retry.subject.user_id == "bob" and (await h.app.runner.usage(BOB)).used_today == 2
    no_seed = await settle(h, (await h.app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="q"))).id)
    again = await settle(h, (await h.app.runner.rerun(no_seed.id, ALICE, vary=False)).id)
    assert again.request["seed"] is None  # none given, none sent


async def test_quota_refusal_names_the_limit_and_charges_nothing(tmp_path: Path, harness: Harness) -> None:
    h = harness
    await h.app.store.set_limit(ALICE.scope, "member", ALICE.user_id, daily=2, concurrent=None)
    await h.app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="a", count=2))
    with pytest.raises(QuotaError) as info:
        await h.app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="b"))
    assert info.value.kind == "daily" and "resets" in str(info.value)
    assert len(await h.app.store.list_jobs(ALICE)) == 1


async def test_bad_input_is_refused_before_anything_is_recorded(harness: Harness) -> None:
    with pytest.raises(InputError):
        await harness.app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="x" * 5000))
    assert await harness.app.store.list_jobs(None) == []
    assert harness.fal.requests == []


async def test_a_failed_delivery_is_retried_until_it_lands(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    import bot.jobs.outbox

    monkeypatch.setattr(bot.jobs.outbox, "DELIVERY_BACKOFF_S", (0.05,))
    monkeypatch.setattr(bot.jobs.outbox, "DELIVERY_SCAN_S", 0.05)
    h = harness
    h.delivery.fail_times = 2
    job = await h.app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="x"))
    deadline = time.monotonic() + 10
    while not await h.app.store.is_delivered(job.id, "discord"):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert [j.id for j in h.delivery.delivered] == [job.id]


async def test_rejected_key_falls_back_to_the_next_provider(
        tmp_path: Path, harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """imagine's order is novita, pixazo, fal: with a broken novita, the job lands on fal."""
    from tests.fakes.novita import FakeNovita

    novita = FakeNovita(key="right")
    await novita.start()
    try:
        settings = settings_for(tmp_path / "b", harness.fal, novita_api_key="wrong", novita_base_url=novita.base_url)
        delivery = RecordingDelivery()
        async with open_app(settings, deliverers={"discord": delivery},
                            config=RunnerConfig(origins=frozenset({Origin.DISCORD}))) as app:
            job = await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="x"))
            assert job.provider == "novita"
            await app.runner.wait(job.id)
            done = await app.store.get_job(job.id)
            assert done is not None and done.state is JobState.SUCCEEDED and done.provider == "fal"
            assert len(novita.calls("POST")) == 1 and len(harness.fal.calls("POST")) == 1
    finally:
        await novita.stop()


async def test_a_job_caught_mid_submit_by_a_crash_is_failed_not_resent(tmp_path: Path, harness: Harness) -> None:
    h = harness
    job = await h.app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="x"), start=False)
    await h.app.store.update_job(job.id, now=h.app.runner.clock(), state=JobState.SUBMITTING)
    await h.app.store.release(job.id, h.app.runner.owner)  # its process is gone
    await h.app.runner.adopt()
    done = await settle(h, job.id)
    assert done.state is JobState.FAILED and done.error_code == "interrupted" and done.refunded
    assert h.fal.requests == []


async def test_fair_gate_serves_users_in_turn() -> None:
    gate = FairGate(1)
    await gate.acquire("a", 0)
    order: list[int] = []

    async def take(user: str, job: int) -> None:
        await gate.acquire(user, job)
        order.append(job)
        gate.release()

    tasks = [asyncio.create_task(take("a", n)) for n in (1, 2, 3)]
    await asyncio.sleep(0)
    tasks += [asyncio.create_task(take("b", 10)), asyncio.create_task(take("c", 20))]
    await asyncio.sleep(0)
    assert gate.order() == [1, 10, 20, 2, 3]
    assert gate.position(20) == 3
    gate.release()
    await asyncio.gather(*tasks)
    assert order == [1, 10, 20, 2, 3]


async def test_one_users_burst_does_not_starve_another(harness: Harness) -> None:
    h = harness
    h.app.runner.gates["fal"].capacity = 1
    h.fal.script = JobScript(queue_polls=0, running_polls=1)
    burst = [await h.app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt=f"a{i}")) for i in range(5)]
    bob = await h.app.runner.create(BOB, Origin.DISCORD, ImagineRequest(prompt="b"))
    for job in [*burst, bob]:
        await settle(h, job.id)
    finished = sorted([await h.app.store.get_job(j.id) for j in [*burst, bob]],
                      key=lambda j: j.finished_at)  # type: ignore[union-attr,arg-type,return-value]
    # Bob arrived last but is served right after Alice's first job, not after all five.
    assert [j.id for j in finished].index(bob.id) <= 2  # type: ignore[union-attr]


async def test_prune_removes_old_local_copies_but_keeps_rows(harness: Harness) -> None:
    h = harness
    job = await settle(h, (await h.app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="x"))).id)
    sha256 = job.outputs[0].sha256
    assert await kept(h.app, sha256)
    from datetime import timedelta

    original_clock = h.app.runner.clock
    h.app.runner.clock = lambda: original_clock() + timedelta(days=8)
    assert await h.app.runner.prune() == 1
    assert not await kept(h.app, sha256)
    row = await h.app.store.get_job(job.id)
    assert row is not None and row.outputs[0].path is None and row.state is JobState.SUCCEEDED


async def test_a_request_the_first_provider_cannot_take_goes_to_the_next(
        tmp_path: Path, harness: Harness) -> None:
    """Novita is first for imagine but with GLM Image makes one image per job: a request for two lands on fal."""
    from tests.fakes.novita import FakeNovita

    novita = FakeNovita(key="right")
    await novita.start()
    try:
        settings = settings_for(tmp_path / "c", harness.fal, novita_api_key="right", novita_base_url=novita.base_url,
                                novita_model="glm-image")
        async with open_app(settings, deliverers={"discord": RecordingDelivery()},
                            config=RunnerConfig(origins=frozenset({Origin.DISCORD}))) as app:
            one = await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="x"))
            two = await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="x", count=2))
            assert (one.provider, two.provider) == ("novita", "fal")
            with pytest.raises(InputError):
                await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="x", count=2),
                                        provider="novita")
    finally:
        await novita.stop()


async def test_cancelling_waiting_jobs_never_leaks_a_provider_slot(harness: Harness) -> None:
    h = harness
    gate = h.app.runner.gates["fal"]
    gate.capacity = 1
    h.fal.script = JobScript(queue_polls=0, running_polls=3)
    jobs = [await h.app.runner.create(Subject.member(1, f"u{i}"), Origin.DISCORD, ImagineRequest(prompt=str(i)))
            for i in range(4)]
    for job in jobs[1:3]:
        await h.app.runner.cancel(job.id, job.subject)
    for job in (jobs[0], jobs[3]):
        assert (await settle(h, job.id)).state is JobState.SUCCEEDED
    assert await slots_in_use(h.app, "fal") == 0 and gate.waiting == 0


async def test_a_submit_that_timed_out_is_not_sent_to_another_provider(
        tmp_path: Path, harness: Harness) -> None:
    """The timed-out request may have started a paid job: moving it elsewhere could pay twice."""
    from tests.fakes.pixazo import FakePixazo

    pixazo = FakePixazo(key="pk")
    pixazo.latency_s = 1.0
    await pixazo.start()
    try:
        settings = settings_for(tmp_path / "d", harness.fal, pixazo_api_key="pk", pixazo_base_url=pixazo.base_url,
                                http_timeout_s=0.3)
        async with open_app(settings, deliverers={"discord": RecordingDelivery()},
                            config=RunnerConfig(origins=frozenset({Origin.DISCORD}))) as app:
            job = await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="x"))
            assert job.provider == "pixazo"
            await app.runner.wait(job.id)
            done = await app.store.get_job(job.id)
            assert done is not None and done.state is JobState.FAILED and done.provider == "pixazo"
            assert done.charged is None and done.refunded  # may have been billed; the member is not charged
            assert harness.fal.calls("POST") == []
    finally:
        await pixazo.stop()


async def test_a_job_that_waited_in_line_past_its_deadline_is_not_sent(harness: Harness) -> None:
    h = harness
    h.app.runner.gates["fal"].capacity = 1
    h.fal.script = JobScript(duration_s=1.0)
    h.app.runner.config.deadlines = {"imagine": 5}
    first = await h.app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="1"))
    deadline = time.monotonic() + 10
    while not h.fal.calls("POST"):  # the first job holds the only slot (at the provider) before the second comes
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    # The second job's deadline passes well before the first job frees the only slot.
    h.app.runner.config.deadlines = {"imagine": 0.4}
    second = await h.app.runner.create(BOB, Origin.DISCORD, ImagineRequest(prompt="2"))
    done = await settle(h, second.id)
    assert done.state is JobState.FAILED and "waited in line" in (done.error_message or "")
    assert done.refunded and done.charged is False
    await settle(h, first.id)
    assert len(h.fal.calls("POST")) == 1


async def test_a_job_finished_just_before_a_crash_is_refunded_and_delivered_on_restart(harness: Harness) -> None:
    h = harness
    job = await h.app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="x"), start=False)
    # As if the process died right after writing the terminal state: no refund, no delivery yet.
    await h.app.store.update_job(job.id, now=h.app.runner.clock(), state=JobState.FAILED, error_message="boom")
    await h.app.store.release(job.id, h.app.runner.owner)  # its process is gone
    await h.app.runner.adopt()
    done = await settle(h, job.id)
    assert done.refunded and [j.id for j in h.delivery.delivered] == [job.id]


async def test_the_delivery_loop_survives_a_failing_scan(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    import bot.jobs.outbox

    monkeypatch.setattr(bot.jobs.outbox, "DELIVERY_SCAN_S", 0.05)
    monkeypatch.setattr(bot.jobs.outbox, "DELIVERY_BACKOFF_S", (0.05,))
    h = harness
    real = h.app.store.due_deliveries
    calls = 0

    async def flaky(**kwargs):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database is locked")
        return await real(**kwargs)

    monkeypatch.setattr(h.app.store, "due_deliveries", flaky)
    h.delivery.fail_times = 1
    job = await h.app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="x"))
    deadline = time.monotonic() + 10
    while not await h.app.store.is_delivered(job.id, "discord"):
        assert time.monotonic() < deadline, "the delivery loop died"
        await asyncio.sleep(0.05)
    assert calls >= 2


async def test_the_same_image_stored_by_many_jobs_at_once(tmp_path: Path) -> None:
    from bot.blobs import BlobStore

    blobs = BlobStore(tmp_path / "blobs")
    data = b"the same bytes" * 1000
    results = await asyncio.gather(*(blobs.put(data) for _ in range(20)))
    assert len({digest for digest, _ in results}) == 1
    assert await blobs.get(results[0][0]) == data
    assert [p.name for p in (tmp_path / "blobs").rglob("*.tmp")] == []


async def test_prepare_runs_after_recording_and_before_the_submit_and_a_failing_one_stops_nothing(
        harness: Harness) -> None:
    h = harness
    seen: list[tuple[int, JobState, bool]] = []

    async def prepare(job: Job) -> None:
        stored = await h.app.store.get_job(job.id)
        assert stored is not None
        await asyncio.sleep(0.2)  # long enough for a job started early to reach the provider
        after = await h.app.store.get_job(job.id)
        assert after is not None
        seen.append((job.id, stored.state, after.handle is None))
        if len(seen) == 2:
            raise RuntimeError("the status message could not be posted")

    first = await h.app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="a"), prepare=prepare)
    second = await h.app.runner.rerun(first.id, BOB, vary=False, prepare=prepare)
    # Recorded (and charged) before prepare; not sent anywhere until it returned.
    assert seen == [(first.id, JobState.PENDING, True), (second.id, JobState.PENDING, True)]
    assert (await settle(h, first.id)).state is JobState.SUCCEEDED
    assert (await settle(h, second.id)).state is JobState.SUCCEEDED  # prepare raised: the job ran all the same
