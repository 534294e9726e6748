"""Novita's models inside the real runner (real SQLite file, fakes over sockets): Seedream's synchronous call as
a job, and a retired GLM endpoint that sends jobs to the next provider and is remembered in the store."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from bot import codec
from bot.app import App, open_app
from bot.errors import ConfigError
from bot.jobs import JobEvent, RunnerConfig
from bot.operations import EditRequest, ImagineRequest, Operation
from bot.providers.synchronous import placeholder
from bot.store.models import JobState, Lease, NewJob, Origin, Subject
from tests.conftest import image_input
from tests.fakes.fal import FakeFal
from tests.fakes.novita import FakeNovita
from tests.runner.conftest import RecordingDelivery, finished, settings_for

ALICE = Subject.member(1, "alice")
SEEDREAM, GLM = "/v3/seedream-5.0-lite", "/v3/async/glm-image"


@pytest.fixture
async def novita() -> AsyncIterator[FakeNovita]:
    server = FakeNovita(key="nv-runner-key")
    await server.start()
    yield server
    await server.stop()


@asynccontextmanager
async def app_for(tmp_path: Path, fal: FakeFal, novita: FakeNovita, **overrides: object) -> AsyncIterator[App]:
    settings = settings_for(tmp_path, fal, novita_api_key=novita.key, novita_base_url=novita.base_url, **overrides)
    async with open_app(settings, deliverers={"discord": RecordingDelivery()},
                        config=RunnerConfig(origins=frozenset({Origin.DISCORD}))) as app:
        yield app


# --- Seedream's synchronous call as a job --------------------------------------------------------------------


async def test_a_synchronous_call_is_recorded_shown_running_and_delivered(
        tmp_path: Path, fal: FakeFal, novita: FakeNovita) -> None:
    novita.hold_paths = [SEEDREAM]
    async with app_for(tmp_path, fal, novita) as app:
        events: list[JobEvent] = []

        async def record(event: JobEvent) -> None:
            events.append(event)

        app.runner.add_listener(record)
        job = await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="a fox"))
        assert job.provider == "novita"
        deadline = time.monotonic() + 5
        while not novita.calls("POST", SEEDREAM):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        during = await app.store.get_job(job.id)
        assert during is not None and during.state is JobState.RUNNING and during.submitted_at is not None
        assert [e.kind for e in events] == ["progress"] and events[0].job.state is JobState.RUNNING
        novita.release.set()
        done = await finished(app, job.id)
    assert done.state is JobState.SUCCEEDED and len(done.outputs) == 1 and not done.refunded
    assert Path(done.outputs[0].path or "").read_bytes() == novita.files[next(iter(novita.files))]
    assert len(novita.calls("POST", SEEDREAM)) == 1 and fal.requests == []


async def test_novita_joins_the_edit_order_after_fal_and_pixazo(tmp_path: Path, fal: FakeFal,
                                                                novita: FakeNovita) -> None:
    async with app_for(tmp_path, fal, novita) as app:
        assert [p.name for p in app.providers.order(Operation.EDIT)] \
            == ["fal", "novita"]
        job = await app.runner.create(ALICE, Origin.DISCORD, EditRequest(images=(image_input(),), prompt="x"),
                                      provider="novita")
        done = await finished(app, job.id)
    assert done.state is JobState.SUCCEEDED and done.provider == "novita"
    assert len(novita.calls("POST", SEEDREAM)) == 1


async def test_fewer_images_than_asked_succeeds_with_those(tmp_path: Path, fal: FakeFal,
                                                           novita: FakeNovita) -> None:
    novita.seedream_counts = [2]
    async with app_for(tmp_path, fal, novita) as app:
        job = await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="foxes", count=4))
        done = await finished(app, job.id)
    assert done.state is JobState.SUCCEEDED and len(done.outputs) == 2


async def test_fewer_images_than_asked_is_charged_for_what_came_back(tmp_path: Path, fal: FakeFal,
                                                                     novita: FakeNovita) -> None:
    novita.seedream_counts = [2]
    async with app_for(tmp_path, fal, novita) as app:
        job = await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="foxes", count=4))
        await finished(app, job.id)
        usage = await app.runner.usage(ALICE)
    assert usage.used_today == 2


async def test_a_garbled_answer_is_a_call_that_ran_refunded_to_the_member_never_counted_as_free(
        tmp_path: Path, fal: FakeFal, novita: FakeNovita) -> None:
    novita.seedream_garbled = True
    async with app_for(tmp_path, fal, novita) as app:
        job = await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="a fox"))
        done = await finished(app, job.id)
        usage = await app.runner.usage(ALICE)
    # The call was answered, so it may have been billed: "charged" stays unknown, it is not moved to fal (that
    # could pay twice), and the member, who got nothing, is refunded.
    assert done.state is JobState.FAILED and done.charged is None and done.refunded
    assert usage.used_today == 0
    assert len(novita.calls("POST", SEEDREAM)) == 1 and fal.requests == []


async def test_a_call_that_times_out_is_interrupted_refunded_and_never_moved(
        tmp_path: Path, fal: FakeFal, novita: FakeNovita) -> None:
    novita.call_s = 3.0
    async with app_for(tmp_path, fal, novita, novita_sync_timeout_s=0.4, http_timeout_s=30) as app:
        job = await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="a fox"))
        assert job.extra["fallbacks"] == ["fal"]  # fal could have taken it
        done = await finished(app, job.id)
        usage = await app.runner.usage(ALICE)
    assert done.state is JobState.FAILED and done.error_code == "interrupted" and done.refunded
    assert done.error_message is not None and "timed out after the request was sent" in done.error_message
    assert done.charged is None and usage.used_today == 0
    assert len(novita.calls("POST", SEEDREAM)) == 1 and fal.requests == []


async def test_a_job_found_mid_call_after_a_restart_ends_interrupted_and_refunded(
        tmp_path: Path, fal: FakeFal, novita: FakeNovita) -> None:
    async with app_for(tmp_path, fal, novita) as app:
        runner = app.runner
        lease = Lease(runner.owner, runner.host, runner.pid, app.settings.lease_seconds)
        job = await app.store.create_job(
            NewJob(subject=ALICE, origin=Origin.DISCORD, operation="imagine", provider="novita", cost=1,
                   request=codec.encode(ImagineRequest(prompt="a fox")), lease=lease, delivery_target="discord"),
            defaults=runner.defaults, now=runner.clock())
        # What a process killed during the call leaves behind: running, with the placeholder handle.
        await app.store.update_job(job.id, now=app.runner.clock(), state=JobState.RUNNING,
                                   handle=placeholder("novita", job.id, "imagine").model_dump(mode="json"))
        await app.store.release(job.id, app.runner.owner)
        await app.runner.adopt()
        done = await finished(app, job.id)
        usage = await app.runner.usage(ALICE)
    assert done.state is JobState.FAILED and done.error_code == "interrupted" and done.refunded
    assert done.error_message is not None and "not sent again" in done.error_message
    assert usage.used_today == 0
    assert novita.requests == [] and fal.requests == []


# --- a retired model ---------------------------------------------------------------------------------------


async def test_a_retired_glm_sends_the_job_on_marks_the_store_and_says_so_once(
        tmp_path: Path, fal: FakeFal, novita: FakeNovita, caplog: pytest.LogCaptureFixture) -> None:
    novita.retire_glm(410)
    caplog.set_level(logging.WARNING, logger="bot.jobs")
    async with app_for(tmp_path, fal, novita, novita_model="glm-image") as app:
        first = await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="a fox"))
        assert first.provider == "novita"
        first = await finished(app, first.id)
        second = await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="a hare"))
        second = await finished(app, second.id)
        usage = await app.runner.usage(ALICE)
        until = await app.store.retired_until("novita", "glm-image", now=app.runner.clock())
    assert first.state is JobState.SUCCEEDED and first.provider == "fal" and not first.refunded
    assert second.provider == "fal"  # chosen from the start: the mark is read before choosing
    assert usage.used_today == 2  # one image each: moving on cost the member nothing more
    assert len(novita.calls("POST", GLM)) == 1 and len(fal.calls("POST")) == 2
    assert until is not None and timedelta(minutes=59) < until - first.created_at <= timedelta(minutes=61)
    said = [r.getMessage() for r in caplog.records if "glm-image" in r.getMessage()]
    assert len(said) == 1 and "NOVITA_MODEL=seedream-5.0-lite" in said[0] and "HTTP 410" in said[0]


async def test_the_mark_is_shared_through_the_store_and_expires(tmp_path: Path, fal: FakeFal,
                                                               novita: FakeNovita) -> None:
    novita.retire_glm(404)
    async with app_for(tmp_path, fal, novita, novita_model="glm-image") as app:
        job = await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="a fox"))
        await finished(app, job.id)
    # Another process on the same database skips the model without trying it...
    async with app_for(tmp_path, fal, novita, novita_model="glm-image") as app:
        later = await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="a hare"))
        assert later.provider == "fal"
        with pytest.raises(ConfigError, match="retired"):
            await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="x"), provider="novita")
        await finished(app, later.id)
        # ...until the mark expires: then the model is tried again.
        start = app.runner.clock
        app.runner.clock = lambda: start() + timedelta(hours=1, minutes=1)
        again = await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="an owl"))
        assert again.provider == "novita"
    assert len(novita.calls("POST", GLM)) == 1


async def test_a_4xx_about_the_input_is_not_a_retirement(tmp_path: Path, fal: FakeFal, novita: FakeNovita) -> None:
    novita.fail_next(400, {"code": 400, "reason": "INVALID_REQUEST_BODY", "message": "prompt is not allowed",
                           "metadata": {}}, path_contains=SEEDREAM)
    async with app_for(tmp_path, fal, novita) as app:
        job = await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="a fox"))
        done = await finished(app, job.id)
        assert await app.store.retired_until("novita", "seedream-5.0-lite", now=app.runner.clock()) is None
    assert done.state is JobState.FAILED and "prompt is not allowed" in (done.error_message or "")
    assert done.refunded and fal.requests == []


async def test_retrying_a_job_whose_model_was_retired_since_goes_to_the_next_provider(
        tmp_path: Path, fal: FakeFal, novita: FakeNovita) -> None:
    async with app_for(tmp_path, fal, novita, novita_model="glm-image") as app:
        original = await finished(app, (await app.runner.create(ALICE, Origin.DISCORD,
                                                                ImagineRequest(prompt="a fox"))).id)
        assert original.provider == "novita" and original.state is JobState.SUCCEEDED
        novita.retire_glm(410)
        await finished(app, (await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="x"))).id)
        retry = await finished(app, (await app.runner.rerun(original.id, ALICE, vary=False)).id)
    assert retry.state is JobState.SUCCEEDED and retry.provider == "fal" and retry.attempts == 1
    assert len(novita.calls("POST", GLM)) == 2  # the first job, and the one that found it retired


async def test_a_glm_task_in_flight_when_the_model_is_switched_to_seedream_is_still_followed(
        tmp_path: Path, fal: FakeFal, novita: FakeNovita) -> None:
    # A GLM task submitted (and paid) before the operator switched NOVITA_MODEL, or before the upgrade that made
    # Seedream the default: after the restart it is asked for at Novita's task API, not taken for a Seedream call
    # cut short.
    async with app_for(tmp_path, fal, novita, novita_model="glm-image") as app:
        handle = await app.providers.get("novita").submit(ImagineRequest(prompt="a fox"))
    async with app_for(tmp_path, fal, novita) as app:
        runner = app.runner
        lease = Lease(runner.owner, runner.host, runner.pid, app.settings.lease_seconds)
        job = await app.store.create_job(
            NewJob(subject=ALICE, origin=Origin.DISCORD, operation="imagine", provider="novita", cost=1,
                   request=codec.encode(ImagineRequest(prompt="a fox")), lease=lease, delivery_target="discord"),
            defaults=runner.defaults, now=runner.clock())
        await app.store.update_job(job.id, now=runner.clock(), state=JobState.QUEUED,
                                   handle=handle.model_dump(mode="json"))
        await app.store.release(job.id, runner.owner)
        await runner.adopt()
        done = await finished(app, job.id)
    assert done.state is JobState.SUCCEEDED and len(done.outputs) == 1, done.error_message
    assert len(novita.calls("POST", GLM)) == 1 and novita.calls("POST", SEEDREAM) == []


async def test_a_job_cancelled_during_the_synchronous_call_stays_cancelled_refunded_and_is_not_sent_on(
        tmp_path: Path, fal: FakeFal, novita: FakeNovita) -> None:
    novita.hold_paths = [SEEDREAM]
    async with app_for(tmp_path, fal, novita) as app:
        job = await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="a fox"))
        deadline = time.monotonic() + 5
        while not novita.calls("POST", SEEDREAM):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        cancelled = await app.runner.cancel(job.id, ALICE)
        await asyncio.wait_for(app.runner.wait(job.id), 2)  # nothing waits for the call's answer any more
        novita.release.set()
        await asyncio.sleep(0.3)  # an answer (or anything sent on) would be acted on now
        done = await app.store.get_job(job.id)
        usage = await app.runner.usage(ALICE)
    assert cancelled.state is JobState.CANCELLED and done is not None and done.state is JobState.CANCELLED
    assert done.refunded and usage.used_today == 0 and done.outputs == ()
    assert len(novita.calls("POST", SEEDREAM)) == 1 and fal.requests == []
