"""Jobs completed by webhook: the real runner, its listener on a real port, and the fal and Novita fakes calling
it back over loopback. Polling must drop to a safety net, forged calls must change nothing."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bot.app import App, open_app
from bot.jobs import RunnerConfig
from bot.operations import ImagineRequest
from bot.settings import Settings
from bot.store.models import Job, JobState, Origin, Subject
from tests.fakes.base import JobScript
from tests.fakes.fal import FakeFal
from tests.fakes.novita import FakeNovita
from tests.runner.conftest import RecordingDelivery

ALICE = Subject.member(1, "alice")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class World:
    app: App
    fal: FakeFal
    novita: FakeNovita
    delivery: RecordingDelivery
    hook_url: str

    async def finish(self, job: Job, timeout: float = 10) -> tuple[Job, float]:
        """Wait until the job is delivered; return it and the wall time of delivery."""
        deadline = time.monotonic() + timeout
        while not any(j.id == job.id for j in self.delivery.delivered):
            assert time.monotonic() < deadline, f"job {job.id} was not delivered"
            await asyncio.sleep(0.005)
        delivered_at = time.time()
        stored = await self.app.store.get_job(job.id)
        assert stored is not None
        return stored, delivered_at


async def submitted(fake: FakeFal | FakeNovita, count: int = 1) -> str:
    """Wait for the runner's submit to reach the fake; the provider's id of the newest job."""
    deadline = time.monotonic() + 5
    while len(fake.jobs) < count:
        assert time.monotonic() < deadline, "the job was never submitted"
        await asyncio.sleep(0.005)
    return list(fake.jobs)[-1]


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeFal, FakeNovita]]:
    fal, novita = FakeFal(key="fk"), FakeNovita(key="nk")
    await fal.start()
    await novita.start()
    yield fal, novita
    await fal.stop()
    await novita.stop()


def settings(tmp_path: Path, fal: FakeFal, novita: FakeNovita, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": f"sqlite:///{tmp_path}/atelier.db", "fal_key": fal.key, "fal_queue_url": fal.base_url,
        "novita_api_key": novita.key, "novita_base_url": novita.base_url, "fal_jwks_url": fal.jwks_url,
        "novita_model": "glm-image",  # Novita's webhooks exist only on its async API (Seedream answers at once)
        "poll_min_s": 0.02, "poll_max_s": 0.1, "http_backoff_base_s": 0.01, "quota_daily": 100,
        "quota_concurrent": 50, "webhook_host": "127.0.0.1", "webhook_safety_poll_s": 30,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


def hooked(tmp_path: Path, fal: FakeFal, novita: FakeNovita, **overrides: object) -> Settings:
    """Settings with webhooks on: the listener on a free loopback port, which is also the public URL."""
    port = free_port()
    return settings(tmp_path, fal, novita, webhook_public_url=f"http://127.0.0.1:{port}", webhook_port=port,
                    **overrides)


@pytest.fixture
async def world(tmp_path: Path, fakes: tuple[FakeFal, FakeNovita]) -> AsyncIterator[World]:
    fal, novita = fakes
    delivery = RecordingDelivery()
    config = RunnerConfig(origins=frozenset({Origin.DISCORD}))
    s = hooked(tmp_path, fal, novita)
    async with open_app(s, deliverers={"discord": delivery}, config=config, listen=True) as app:
        yield World(app, fal, novita, delivery, s.webhook_public_url)


def status_polls(fal: FakeFal) -> int:
    return len([r for r in fal.calls("GET") if r.path.endswith("/status")])


async def test_a_fal_job_completes_on_its_signed_callback_without_a_single_poll(world: World) -> None:
    world.fal.script = JobScript(duration_s=0.6)
    job = await world.app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="a fox"), provider="fal")
    await submitted(world.fal)
    submit = world.fal.calls("POST")[0]
    assert submit.query["fal_webhook"] == f"{world.hook_url}/webhooks/fal"
    done, delivered_at = await world.finish(job)
    assert done.state is JobState.SUCCEEDED and len(done.outputs) == 1
    fake_job = world.fal.jobs[done.handle.remote_id]  # type: ignore[union-attr]
    assert fake_job.done_wall is not None and delivered_at - fake_job.done_wall < 0.5
    # The verified call carried the result: no status poll and no result request; only the image download.
    assert status_polls(world.fal) == 0
    assert [r for r in world.fal.calls("GET") if "/requests/" in r.path] == []
    assert world.fal.file_downloads == 1
    assert [d.status for d in world.fal.webhook_deliveries] == [200]


async def test_a_fal_failure_reported_by_callback_fails_the_job_and_refunds(world: World) -> None:
    world.fal.script = JobScript(duration_s=0.3, outcome="fail", fail_reason="content policy")
    job = await world.app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="x"), provider="fal")
    done, _ = await world.finish(job)
    assert done.state is JobState.FAILED and "content policy" in (done.error_message or "")
    assert done.refunded and status_polls(world.fal) == 0


async def test_a_forged_or_replayed_fal_call_changes_nothing(world: World, caplog: pytest.LogCaptureFixture) -> None:
    world.fal.script = JobScript(duration_s=1.0)
    job = await world.app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="x"), provider="fal")
    remote_id = await submitted(world.fal)
    forged = json.dumps({"request_id": remote_id, "status": "ERROR", "payload": {"detail": "forged"},
                         "error": "forged"}).encode()
    async with aiohttp.ClientSession() as session:
        headers = world.fal.sign(remote_id, forged, key=Ed25519PrivateKey.generate())
        async with session.post(f"{world.hook_url}/webhooks/fal", data=forged, headers=headers) as resp:
            assert resp.status == 401
        done, _ = await world.finish(job)
        assert done.state is JobState.SUCCEEDED
        assert "refused a fal webhook call" in caplog.text and "forged" not in caplog.text
        # The genuine call again, as fal's retries would send it: accepted, and the job is not delivered twice.
        genuine = json.dumps(world.fal.webhook_deliveries[0].body).encode()
        async with session.post(f"{world.hook_url}/webhooks/fal", data=genuine,
                                headers=world.fal.sign(remote_id, genuine)) as resp:
            assert resp.status == 200
    await asyncio.sleep(0.2)
    assert [j.id for j in world.delivery.delivered] == [job.id]


async def test_a_novita_callback_is_only_a_hint_confirmed_by_asking_novita(world: World) -> None:
    world.novita.script = JobScript(duration_s=0.8)
    job = await world.app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="x"), provider="novita")
    remote_id = await submitted(world.novita)
    body = json.loads(world.novita.calls("POST")[0].body)
    assert body["extra"] == {"webhook": {"url": f"{world.hook_url}/webhooks/novita"}}
    # A forged "succeeded" call while the task still runs: the job asks Novita, which says it is running.
    forged = {"event_type": "ASYNC_TASK_RESULT", "payload": world.novita.result_body(
        world.novita.jobs[remote_id], status="TASK_STATUS_SUCCEED")}
    async with aiohttp.ClientSession() as session, \
            session.post(f"{world.hook_url}/webhooks/novita", json=forged) as resp:
        assert resp.status == 200
    await asyncio.sleep(0.1)
    stored = await world.app.store.get_job(job.id)
    assert stored is not None and not stored.state.terminal
    done, delivered_at = await world.finish(job)
    assert done.state is JobState.SUCCEEDED
    fake_job = world.novita.jobs[remote_id]
    assert fake_job.done_wall is not None and delivered_at - fake_job.done_wall < 0.5
    # One look for the forged hint and one more on the normal schedule (a result endpoint may lag its call), then
    # one for the real call: the 30 s safety net itself never fired.
    assert len(world.novita.calls("GET", "/v3/async/task-result")) == 3


async def test_webhooks_that_never_arrive_bring_back_full_speed_polling(
        tmp_path: Path, fakes: tuple[FakeFal, FakeNovita]) -> None:
    fal, novita = fakes
    fal.webhooks_enabled = False  # e.g. the public URL does not reach this machine
    fal.script = JobScript(duration_s=0.2)
    s = hooked(tmp_path, fal, novita, webhook_safety_poll_s=0.6)
    delivery = RecordingDelivery()
    async with open_app(s, deliverers={"discord": delivery}, config=RunnerConfig(), listen=True) as app:
        world = World(app, fal, novita, delivery, "")
        assert app.runner.webhooks is not None
        for _ in range(3):  # each found by the slow safety-net poll
            job = await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="x"), provider="fal")
            await world.finish(job)
        assert not app.runner.webhooks.arriving("fal")
        started = time.monotonic()
        job = await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="x"), provider="fal")
        await world.finish(job)
        assert time.monotonic() - started < 0.5  # polled at full speed, not after the 0.6 s safety interval


async def test_without_a_public_url_nothing_listens_and_providers_are_not_asked_to_call(
        tmp_path: Path, fakes: tuple[FakeFal, FakeNovita]) -> None:
    fal, novita = fakes
    port = free_port()
    fal.script = JobScript(duration_s=0.1)
    delivery = RecordingDelivery()
    s = settings(tmp_path, fal, novita, webhook_port=port)
    async with open_app(s, deliverers={"discord": delivery}, config=RunnerConfig(), listen=True) as app:
        assert app.webhooks is None and app.runner.webhooks is None
        with pytest.raises(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
        job = await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="x"), provider="fal")
        done, _ = await World(app, fal, novita, delivery, "").finish(job)
        assert done.state is JobState.SUCCEEDED
        assert "fal_webhook" not in fal.calls("POST")[0].query
        assert fal.webhook_deliveries == []


async def test_a_job_whose_call_came_while_the_bot_was_down_is_found_at_once_after_restart(
        tmp_path: Path, fakes: tuple[FakeFal, FakeNovita]) -> None:
    fal, novita = fakes
    fal.script = JobScript(duration_s=0.5)
    fal.webhook_retries = 1  # fal retries for two hours; here the calls give up while the bot is down
    s = hooked(tmp_path, fal, novita, webhook_safety_poll_s=30)
    config = RunnerConfig(origins=frozenset({Origin.DISCORD}))
    first = RecordingDelivery()
    async with open_app(s, deliverers={"discord": first}, config=config, listen=True) as app:
        job = await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="x"), provider="fal")
        await submitted(fal)
    deadline = time.monotonic() + 5
    while len(fal.webhook_deliveries) < 2:  # both attempts found nobody listening
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert all(d.status is None for d in fal.webhook_deliveries)
    second = RecordingDelivery()
    started = time.monotonic()
    async with open_app(s, deliverers={"discord": second}, config=config, listen=True) as app:
        done, _ = await World(app, fal, novita, second, "").finish(job)
        assert done.state is JobState.SUCCEEDED
        assert time.monotonic() - started < 3  # not the 30 s safety interval
    assert len(fal.calls("POST")) == 1  # never submitted twice


async def test_jobs_already_waiting_out_a_safety_interval_are_woken_when_calls_stop_being_trusted(
        tmp_path: Path, fakes: tuple[FakeFal, FakeNovita]) -> None:
    fal, novita = fakes
    fal.webhooks_enabled = False
    fal.script = JobScript(duration_s=0.1)
    s = hooked(tmp_path, fal, novita, webhook_safety_poll_s=3.0)
    delivery = RecordingDelivery()
    async with open_app(s, deliverers={"discord": delivery}, config=RunnerConfig(), listen=True) as app:
        world = World(app, fal, novita, delivery, "")
        started = time.monotonic()
        first = [await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt=str(n)), provider="fal")
                 for n in range(3)]
        await submitted(fal, 3)
        await asyncio.sleep(1.0)
        late = await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="late"), provider="fal")
        for job in first:
            await world.finish(job)
        await world.finish(late)
        # The late job's own safety poll would come 4 s in; the third miss (about 3 s in) woke it instead.
        assert time.monotonic() - started < 3.8


async def test_a_job_submitted_before_webhooks_were_turned_on_is_polled_normally_after_restart(
        tmp_path: Path, fakes: tuple[FakeFal, FakeNovita]) -> None:
    fal, novita = fakes
    fal.script = JobScript(duration_s=1.5)
    config = RunnerConfig(origins=frozenset({Origin.DISCORD}))
    async with open_app(settings(tmp_path, fal, novita), deliverers={"discord": RecordingDelivery()},
                        config=config) as app:
        job = await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="x"), provider="fal")
        await submitted(fal)
    assert "fal_webhook" not in fal.calls("POST")[0].query
    s = hooked(tmp_path, fal, novita, webhook_safety_poll_s=30)
    delivery = RecordingDelivery()
    started = time.monotonic()
    async with open_app(s, deliverers={"discord": delivery}, config=config, listen=True) as app:
        done, _ = await World(app, fal, novita, delivery, "").finish(job)
        assert done.state is JobState.SUCCEEDED
        assert time.monotonic() - started < 5  # no call was asked for, so none is waited for


async def test_a_signed_call_without_the_output_makes_the_job_fetch_its_result(world: World) -> None:
    world.fal.script = JobScript(duration_s=0.5)
    world.fal.webhooks_enabled = False  # only the call below arrives
    job = await world.app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="x"), provider="fal")
    remote_id = await submitted(world.fal)
    await asyncio.sleep(0.6)  # done at fal by now
    body = json.dumps({"request_id": remote_id, "gateway_request_id": remote_id, "status": "OK", "payload": None,
                       "payload_error": "Output too large to be sent by webhook"}).encode()
    async with aiohttp.ClientSession() as session, \
            session.post(f"{world.hook_url}/webhooks/fal", data=body, headers=world.fal.sign(remote_id, body)) as resp:
        assert resp.status == 200
    done, _ = await world.finish(job, timeout=3)  # well before the 30 s safety poll
    assert done.state is JobState.SUCCEEDED
    assert len([r for r in world.fal.calls("GET") if r.path == f"/fal-ai/glm-image/requests/{remote_id}"]) == 1
