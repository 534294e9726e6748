"""The fal adapter against the fal fake, through real sockets; and fal's own client against the same fake."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.errors import InputError, ProviderAuthError, ProviderUnavailableError
from bot.operations import EditRequest, ImageInput, ImagineRequest, Size
from bot.providers.fal import FalProvider
from bot.providers.polling import PollSchedule, wait_for_result
from bot.providers.status import Failed, JobStatus, Queued, Running, Succeeded
from tests.conftest import LIMITS, make_http
from tests.fakes.base import JobScript
from tests.fakes.fal import FakeFal

FAST = PollSchedule(min_s=0.01, max_s=0.05)


@pytest.fixture
async def fake() -> AsyncIterator[FakeFal]:
    server = FakeFal(key="fal-secret-123")
    await server.start()
    yield server
    await server.stop()


def provider_for(session: aiohttp.ClientSession, fake: FakeFal, key: str | None = None) -> FalProvider:
    key = key or fake.key
    http = make_http(session, "fal", {"Authorization": f"Key {key}", "Accept": "application/json"}, key)
    return FalProvider(http, LIMITS, queue_url=fake.base_url)


async def run(provider: FalProvider, request: EditRequest | ImagineRequest,
              seen: list[JobStatus] | None = None) -> Failed | Succeeded:
    await provider.validate(request)
    handle = await provider.submit(request)

    async def record(status: JobStatus) -> None:
        if seen is not None:
            seen.append(status)

    result = await wait_for_result(provider, handle, deadline=time.monotonic() + 10, schedule=FAST, on_status=record)
    assert isinstance(result, Failed | Succeeded)
    return result


async def test_imagine_happy_path_reports_queue_then_running_and_downloads_images(
        session: aiohttp.ClientSession, fake: FakeFal) -> None:
    fake.script = JobScript(queue_polls=2, running_polls=2, queue_position=3)
    provider = provider_for(session, fake)
    seen: list[JobStatus] = []
    result = await run(provider, ImagineRequest(prompt="a lighthouse at dusk", count=2, seed=7,
                                                size=Size.parse("landscape_16_9")), seen)
    assert isinstance(result, Succeeded)
    assert result.seed == 7
    assert [type(s) for s in seen] == [Queued, Queued, Running, Running, Succeeded]
    assert isinstance(seen[0], Queued) and seen[0].position == 3
    images = [await provider.fetch(o) for o in result.outputs]
    assert [i.data for i in images] == [fake.files[n] for n in fake.jobs[next(iter(fake.jobs))].outputs]
    submit = fake.calls("POST")[0]
    assert submit.path == "/fal-ai/glm-image"
    assert submit.headers["Authorization"] == "Key fal-secret-123"
    # Status and result URLs drop the model's subpath and are those the submit returned.
    assert all("/fal-ai/glm-image/requests/" in c.path for c in fake.calls("GET") if "_files" not in c.path)


async def test_edit_sends_images_as_data_uris_and_the_model_parameters(
        session: aiohttp.ClientSession, fake: FakeFal, photo: ImageInput) -> None:
    provider = provider_for(session, fake)
    request = EditRequest(images=(photo, photo), prompt="make it snow", steps=20, guidance=3.0,
                          output_format="png", size=Size.parse("1024x768"))
    result = await run(provider, request)
    assert isinstance(result, Succeeded)
    import json
    body = json.loads(fake.calls("POST")[0].body)
    assert fake.calls("POST")[0].path == "/fal-ai/glm-image/image-to-image"
    assert body["image_urls"][0].startswith("data:image/png;base64,")
    assert body["image_size"] == {"width": 1024, "height": 768}
    assert (body["num_inference_steps"], body["guidance_scale"], body["output_format"]) == (20, 3.0, "png")
    assert "seed" not in body  # none given, none sent


async def test_a_model_refusal_arrives_with_the_result_as_a_failure_in_fals_words(
        session: aiohttp.ClientSession, fake: FakeFal) -> None:
    fake.script = JobScript(outcome="fail", fail_reason="Content policy violation")
    result = await run(provider_for(session, fake), ImagineRequest(prompt="something forbidden"))
    assert isinstance(result, Failed)
    assert "Content policy violation" in result.reason
    assert result.charged is False


async def test_steps_and_guidance_outside_the_models_range_are_refused_before_sending(
        session: aiohttp.ClientSession, fake: FakeFal, photo: ImageInput) -> None:
    provider = provider_for(session, fake)
    with pytest.raises(InputError, match="steps"):
        await provider.validate(EditRequest(images=(photo,), prompt="p", steps=200))
    with pytest.raises(InputError, match="guidance"):
        await provider.validate(EditRequest(images=(photo,), prompt="p", guidance=10.5))
    assert fake.requests == []


async def test_completed_with_an_infrastructure_error_is_a_retryable_failure(
        session: aiohttp.ClientSession, fake: FakeFal) -> None:
    fake.infra_error = ("Request timed out", "request_timeout")
    result = await run(provider_for(session, fake), ImagineRequest(prompt="p"))
    assert isinstance(result, Failed)
    assert result.retryable and result.code == "request_timeout" and "timed out" in result.reason


async def test_rejected_key_is_a_clear_error_that_never_shows_the_key(
        session: aiohttp.ClientSession, fake: FakeFal) -> None:
    provider = provider_for(session, fake, key="wrong-key-XYZ")
    with pytest.raises(ProviderAuthError) as info:
        await provider.submit(ImagineRequest(prompt="p"))
    assert "fal" in str(info.value) and "Unauthorized" in str(info.value)
    assert "wrong-key-XYZ" not in str(info.value) and "wrong-key-XYZ" not in repr(info.value)
    assert (await provider.check_key()).ok is False
    assert (await provider_for(session, fake).check_key()).ok is True


async def test_429_on_submit_honours_retry_after_and_creates_one_job(
        session: aiohttp.ClientSession, fake: FakeFal) -> None:
    fake.fail_next(429, {"detail": "Too many requests"}, headers={"Retry-After": "0.2"}, method="POST")
    provider = provider_for(session, fake)
    started = time.monotonic()
    await provider.submit(ImagineRequest(prompt="p"))
    assert time.monotonic() - started >= 0.2
    assert len(fake.calls("POST")) == 2 and len(fake.jobs) == 1


async def test_5xx_on_submit_is_never_resent(session: aiohttp.ClientSession, fake: FakeFal) -> None:
    fake.fail_next(503, {"detail": "runner_scheduling_failure"}, method="POST")
    with pytest.raises(ProviderUnavailableError):
        await provider_for(session, fake).submit(ImagineRequest(prompt="p"))
    assert len(fake.calls("POST")) == 1


async def test_5xx_and_malformed_answers_on_polls_are_retried(session: aiohttp.ClientSession, fake: FakeFal) -> None:
    fake.fail_next(502, "<html>nginx</html>", method="GET", times=2, path_contains="/status")
    provider = provider_for(session, fake)
    handle = await provider.submit(ImagineRequest(prompt="p"))
    fake.malformed_next = 1
    result = await wait_for_result(provider, handle, deadline=time.monotonic() + 10, schedule=FAST)
    assert isinstance(result, Succeeded)


async def test_a_job_that_never_finishes_is_cancelled_at_its_deadline(
        session: aiohttp.ClientSession, fake: FakeFal) -> None:
    fake.script = JobScript(outcome="never")
    provider = provider_for(session, fake)
    handle = await provider.submit(ImagineRequest(prompt="p"))
    result = await wait_for_result(provider, handle, deadline=time.monotonic() + 0.3, schedule=FAST)
    assert isinstance(result, Failed) and result.code == "deadline"
    assert len(fake.calls("PUT", "/cancel")) == 1
    assert fake.jobs[handle.remote_id].cancelled


async def test_unknown_status_ends_the_job_instead_of_hanging(session: aiohttp.ClientSession, fake: FakeFal) -> None:
    provider = provider_for(session, fake)
    handle = await provider.submit(ImagineRequest(prompt="p"))
    fake.fail_next(200, {"status": "EXPLODED", "logs": None}, method="GET", path_contains="/status")
    result = await wait_for_result(provider, handle, deadline=time.monotonic() + 10, schedule=FAST)
    assert isinstance(result, Failed) and "EXPLODED" in result.reason


async def test_explicit_sizes_fal_cannot_take_are_refused_before_sending(
        session: aiohttp.ClientSession, fake: FakeFal) -> None:
    provider = provider_for(session, fake)
    with pytest.raises(InputError, match="256 to 2048"):
        await provider.validate(ImagineRequest(prompt="p", size=Size.parse("4096x4096")))
    with pytest.raises(InputError, match="multiples of 32"):
        await provider.validate(ImagineRequest(prompt="p", size=Size.parse("1000x1000")))
    assert fake.requests == []


async def test_expired_output_url_is_a_clear_output_error(session: aiohttp.ClientSession, fake: FakeFal) -> None:
    from bot.errors import OutputError

    provider = provider_for(session, fake)
    result = await run(provider, ImagineRequest(prompt="p"))
    assert isinstance(result, Succeeded)
    fake.expire_outputs = True
    with pytest.raises(OutputError, match="expired"):
        await provider.fetch(result.outputs[0])


async def test_fal_client_completes_a_job_against_the_fake(
        fake: FakeFal, monkeypatch: pytest.MonkeyPatch) -> None:
    """fal's own client agrees that the fake speaks fal's queue protocol."""
    import fal_client
    import fal_client.client

    monkeypatch.setattr(fal_client.client, "QUEUE_URL_FORMAT", f"{fake.base_url}/")
    fake.script = JobScript(queue_polls=2, running_polls=2)
    client = fal_client.AsyncClient(key=fake.key)
    updates: list[object] = []
    result = await client.subscribe("fal-ai/glm-image", arguments={"prompt": "a red fox", "num_images": 1},
                                    with_logs=True, interval=0.01, on_queue_update=updates.append)
    assert result["images"][0]["url"].startswith(fake.base_url)
    assert any(isinstance(u, fal_client.Queued) for u in updates)
    assert any(isinstance(u, fal_client.InProgress) and u.logs for u in updates)
    handle = await client.submit("fal-ai/glm-image", arguments={"prompt": "x"}, path="image-to-image")
    status = await handle.status(with_logs=False)
    assert isinstance(status, fal_client.Queued)
    await handle.cancel()
