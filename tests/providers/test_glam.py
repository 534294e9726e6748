"""GlamProvider against the strict local fake, through real sockets on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.errors import (
    ConfigError,
    InputError,
    OutputError,
    ProviderAuthError,
    ProviderProtocolError,
    ProviderRejectedError,
    ProviderUnavailableError,
)
from bot.images import ImageLimits, load_image
from bot.operations import EditRequest, FilterRequest, ImageInput, Size, TryonRequest
from bot.providers.glam import GlamProvider
from bot.providers.polling import PollSchedule, wait_for_result
from bot.providers.status import Failed, JobStatus, Queued, RemoteHandle, Running, Succeeded, Terminal
from tests.conftest import LIMITS, make_http, png_bytes
from tests.fakes.base import JobScript
from tests.fakes.glam import DEFAULT_FILTERS, FakeGlam

KEY = "glam-secret-9f3a7c21d4e8b605"
FAST = PollSchedule(min_s=0.005, max_s=0.05)


@pytest.fixture
async def fake() -> AsyncIterator[FakeGlam]:
    server = FakeGlam(key=KEY)
    await server.start()
    yield server
    await server.stop()


def make_provider(session: aiohttp.ClientSession, fake: FakeGlam, *, key: str = KEY,
                  base_url: str | None = None) -> GlamProvider:
    http = make_http(session, "glam", {"X-API-Key": key, "Accept": "application/json"}, key)
    return GlamProvider(http, LIMITS, base_url=base_url or fake.base_url)


@pytest.fixture
def provider(session: aiohttp.ClientSession, fake: FakeGlam) -> GlamProvider:
    return make_provider(session, fake)


def garment() -> ImageInput:
    return load_image(png_bytes(140, 180, (250, 250, 20)), filename="shirt.png", limits=ImageLimits())


async def run(provider: GlamProvider, handle: RemoteHandle, *, seconds: float = 10.0,
              seen: list[JobStatus] | None = None) -> Terminal:
    async def record(status: JobStatus) -> None:
        if seen is not None:
            seen.append(status)

    return await wait_for_result(provider, handle, deadline=time.monotonic() + seconds, schedule=FAST,
                                 on_status=record)


def posted(fake: FakeGlam, path: str) -> list[dict[str, object]]:
    return [json.loads(r.body) for r in fake.calls("POST", path)]


# --- happy paths ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pending", [None, []], ids=["pending-null", "pending-empty"])
async def test_filter_end_to_end(provider: GlamProvider, fake: FakeGlam, photo: ImageInput,
                                 pending: list[str] | None) -> None:
    fake.pending_media_urls = pending
    request = FilterRequest(image=photo, name="real_sunset")
    await provider.validate(request)
    handle = await provider.submit(request)
    assert handle.provider == "glam" and handle.operation == "filter"
    assert handle.remote_id.endswith("-u1")

    seen: list[JobStatus] = []
    result = await run(provider, handle, seen=seen)

    assert isinstance(result, Succeeded) and len(result.outputs) == 1
    assert any(isinstance(s, Running) for s in seen)
    image = await provider.fetch(result.outputs[0])
    job = fake.jobs[handle.remote_id]
    assert image.data == fake.files[job.outputs[0]]
    assert image.mime == "image/png"
    # The input went up once, under a neutral name, and the job was given that upload's URL.
    assert len(fake.uploads) == 1 and len(fake.calls("POST", "/api/v1/upload")) == 1
    upload = fake.uploads[0]
    assert upload.data == photo.data and upload.filename == "image.png" and upload.content_type == "image/png"
    assert posted(fake, "/api/v1/generate") == [
        {"media_url": f"{fake.base_url}/_files/{upload.stored}", "filter_name": "real_sunset"}
    ]
    polls = fake.calls("GET", "/api/v1/result/")
    assert polls and all(r.path == f"/api/v1/result/{handle.remote_id}" for r in polls)
    assert all(r.headers.get("X-API-Key") == KEY for r in fake.requests if not r.path.startswith("/_files/"))


@pytest.mark.parametrize("mask", ["overall", "upper", "lower"])
async def test_tryon_end_to_end(provider: GlamProvider, fake: FakeGlam, photo: ImageInput, mask: str) -> None:
    clothes = garment()
    request = TryonRequest(person=photo, garment=clothes, mask=mask)  # type: ignore[arg-type]
    await provider.validate(request)
    handle = await provider.submit(request)
    assert handle.operation == "tryon"

    seen: list[JobStatus] = []
    result = await run(provider, handle, seen=seen)

    assert isinstance(result, Succeeded)
    assert isinstance(seen[0], Queued)  # try-on walks IN_QUEUE first
    assert any(isinstance(s, Running) for s in seen)
    assert (await provider.fetch(result.outputs[0])).width > 0
    # One upload per input, person first, and each URL in the field it belongs to.
    assert [u.data for u in fake.uploads] == [photo.data, clothes.data]
    person_url, garment_url = (f"{fake.base_url}/_files/{u.stored}" for u in fake.uploads)
    assert posted(fake, "/api/v1/tryon") == [
        {"media_url": person_url, "garment_url": garment_url, "mask_type": mask}
    ]
    assert fake.calls("GET", "/api/v1/result/") == []
    assert fake.calls("GET", f"/api/v1/tryon/{handle.remote_id}")


async def test_handle_resumes_after_serialisation(session: aiohttp.ClientSession, fake: FakeGlam,
                                                  provider: GlamProvider, photo: ImageInput) -> None:
    handle = await provider.submit(FilterRequest(image=photo, name="anime"))
    # A restarted bot configured with Glam's documented base (".../api/v1") polls the same job.
    again = make_provider(session, fake, base_url=f"{fake.base_url}/api/v1/")
    result = await run(again, RemoteHandle.from_json(handle.to_json()))
    assert isinstance(result, Succeeded)


# --- job failures and protocol surprises ---------------------------------------------------------------------


@pytest.mark.parametrize("field", ["error", "message", "detail", None])
async def test_failed_job_carries_reason(provider: GlamProvider, fake: FakeGlam, photo: ImageInput,
                                         field: str | None) -> None:
    fake.fail_field = field
    fake.script = JobScript(outcome="fail", fail_reason="No face was found in the photo.")
    handle = await provider.submit(FilterRequest(image=photo, name="noir_film"))
    result = await run(provider, handle)
    assert isinstance(result, Failed)
    assert result.charged is None and result.code == "failed" and not result.retryable
    if field is None:
        assert "without giving a reason" in result.reason
    else:
        assert result.reason == "No face was found in the photo."


async def test_failure_reason_never_repeats_the_key(provider: GlamProvider, fake: FakeGlam,
                                                   photo: ImageInput) -> None:
    fake.script = JobScript(outcome="fail", fail_reason=f"bad request from key {KEY}")
    result = await run(provider, await provider.submit(FilterRequest(image=photo, name="anime")))
    assert isinstance(result, Failed) and KEY not in result.reason and "***" in result.reason


async def test_ready_without_images_is_a_failure(provider: GlamProvider, fake: FakeGlam,
                                                 photo: ImageInput) -> None:
    fake.script = JobScript(images=0)
    result = await run(provider, await provider.submit(FilterRequest(image=photo, name="anime")))
    assert isinstance(result, Failed) and result.code == "no_images"


async def test_unknown_status_ends_the_loop(provider: GlamProvider, fake: FakeGlam, photo: ImageInput) -> None:
    handle = await provider.submit(FilterRequest(image=photo, name="anime"))
    fake.fail_next(200, {"status": "PAUSED", "media_urls": None}, path_contains="/result/", times=2)
    with pytest.raises(ProviderProtocolError, match="PAUSED"):
        await provider.poll(handle)
    result = await run(provider, handle)
    assert isinstance(result, Failed) and result.code == "ProviderProtocolError"
    assert "PAUSED" in result.reason
    assert len(fake.calls("GET", "/result/")) == 2  # one each: never retried as if transient


async def test_malformed_poll_is_retried(provider: GlamProvider, fake: FakeGlam, photo: ImageInput) -> None:
    # A poll body that is not JSON says nothing about a paid job that is probably still running: ask again.
    handle = await provider.submit(FilterRequest(image=photo, name="anime"))
    fake.malformed_next = 1
    with pytest.raises(ProviderUnavailableError) as caught:
        await provider.poll(handle)
    assert caught.value.retryable
    fake.malformed_next = 1
    result = await run(provider, handle)
    assert isinstance(result, Succeeded)


async def test_malformed_submit_answer_is_not_resent(provider: GlamProvider, fake: FakeGlam,
                                                     photo: ImageInput) -> None:
    fake.fail_next(200, '{"event_id": "7f8d', method="POST", path_contains="/generate")
    with pytest.raises(ProviderProtocolError, match="may still have been created"):
        await provider.submit(FilterRequest(image=photo, name="anime"))
    assert len(fake.calls("POST", "/generate")) == 1


# --- keys, throttling and transient errors ---------------------------------------------------------------------


async def test_rejected_key(session: aiohttp.ClientSession, fake: FakeGlam, photo: ImageInput,
                            caplog: pytest.LogCaptureFixture) -> None:
    wrong = "glam-wrong-key-77c0de11"
    provider = make_provider(session, fake, key=wrong)
    caplog.set_level(logging.DEBUG)
    request = FilterRequest(image=photo, name="anime")
    # Validation lists filters, and a rejected key there is not hidden behind "no filter list".
    with pytest.raises(ProviderAuthError) as at_validate:
        await provider.validate(request)
    with pytest.raises(ProviderAuthError) as at_submit:
        await provider.submit(request)
    check = await provider.check_key()
    assert check.ok is False
    for text in (str(at_validate.value), str(at_submit.value), check.message):
        assert wrong not in text
    assert "glam" in str(at_submit.value)
    assert fake.calls("POST", "/generate") == []
    assert wrong not in caplog.text


async def test_key_echoed_by_provider_is_redacted(provider: GlamProvider, fake: FakeGlam,
                                                  photo: ImageInput) -> None:
    fake.fail_next(401, {"detail": f"Invalid API key {KEY}"})
    with pytest.raises(ProviderAuthError) as caught:
        await provider.submit(FilterRequest(image=photo, name="anime"))
    assert KEY not in str(caught.value) and "glam" in str(caught.value)


async def test_check_key(provider: GlamProvider, fake: FakeGlam) -> None:
    assert (await provider.check_key()).ok is True
    # With no /filters route the key cannot be judged either way.
    fake.fail_next(404, {"detail": "Not Found"}, path_contains="/filters")
    assert (await provider.check_key()).ok is None
    fake.fail_next(403, {"detail": "Not authenticated"}, path_contains="/filters")
    assert (await provider.check_key()).ok is False


async def test_429_on_submit_is_retried_after_retry_after(provider: GlamProvider, fake: FakeGlam,
                                                          photo: ImageInput) -> None:
    fake.fail_next(429, {"detail": "Too many requests"}, headers={"Retry-After": "0.2"}, method="POST",
                   path_contains="/generate")
    started = time.monotonic()
    handle = await provider.submit(FilterRequest(image=photo, name="anime"))
    assert time.monotonic() - started >= 0.18  # Retry-After was waited out
    # Sent twice, created once: the 429 created nothing.
    assert len(fake.calls("POST", "/generate")) == 2
    assert list(fake.jobs) == [handle.remote_id]
    assert len(fake.uploads) == 1


async def test_500_on_submit_is_not_retried(provider: GlamProvider, fake: FakeGlam, photo: ImageInput) -> None:
    fake.fail_next(500, {"detail": "Internal Server Error"}, method="POST", path_contains="/generate")
    with pytest.raises(ProviderUnavailableError):
        await provider.submit(FilterRequest(image=photo, name="anime"))
    assert len(fake.calls("POST", "/generate")) == 1
    assert fake.jobs == {}


async def test_500_on_upload_is_retried_with_the_same_bytes(provider: GlamProvider, fake: FakeGlam,
                                                            photo: ImageInput) -> None:
    fake.fail_next(502, {"detail": "Bad Gateway"}, method="POST", path_contains="/upload")
    await provider.submit(FilterRequest(image=photo, name="anime"))
    assert len(fake.calls("POST", "/upload")) == 2
    assert [u.data for u in fake.uploads] == [photo.data]


async def test_500_on_poll_is_retried(provider: GlamProvider, fake: FakeGlam, photo: ImageInput) -> None:
    handle = await provider.submit(FilterRequest(image=photo, name="anime"))
    fake.fail_next(500, {"detail": "Internal Server Error"}, path_contains="/result/", times=2)
    result = await run(provider, handle)
    assert isinstance(result, Succeeded)
    assert len(fake.calls("GET", "/result/")) >= 4  # two refused, then the job's own polls


async def test_expired_output_is_an_output_error(provider: GlamProvider, fake: FakeGlam,
                                                 photo: ImageInput) -> None:
    result = await run(provider, await provider.submit(FilterRequest(image=photo, name="anime")))
    assert isinstance(result, Succeeded)
    fake.expire_outputs = True
    with pytest.raises(OutputError, match="expired"):
        await provider.fetch(result.outputs[0])


async def test_never_finishing_job_hits_the_deadline(provider: GlamProvider, fake: FakeGlam,
                                                     photo: ImageInput) -> None:
    fake.script = JobScript(outcome="never")
    handle = await provider.submit(FilterRequest(image=photo, name="anime"))
    started = time.monotonic()
    result = await run(provider, handle, seconds=0.3)
    assert time.monotonic() - started < 1.0
    assert isinstance(result, Failed) and result.code == "deadline" and result.retryable
    assert "cancelled" not in result.reason  # Glam has no cancel
    assert await provider.cancel(handle) is False


# --- filters and validation ------------------------------------------------------------------------------------


async def test_unknown_filter_is_refused_before_anything_is_sent(provider: GlamProvider, fake: FakeGlam,
                                                                 photo: ImageInput) -> None:
    with pytest.raises(InputError, match="no_such_filter") as caught:
        await provider.validate(FilterRequest(image=photo, name="no_such_filter"))
    assert "real_sunset" in str(caught.value)  # the message suggests real names
    assert fake.calls("POST") == []
    with pytest.raises(InputError):
        await provider.validate(FilterRequest(image=photo, name="  "))


@pytest.mark.parametrize("envelope", ["list", "filters", "data", "items", "results"])
@pytest.mark.parametrize("name_key", ["name", "filter_name"])
async def test_list_filters_envelopes(provider: GlamProvider, fake: FakeGlam, envelope: str,
                                      name_key: str) -> None:
    fake.filters_envelope = envelope
    fake.filter_name_key = name_key
    filters = await provider.list_filters()
    assert sorted(f.name for f in filters) == sorted(DEFAULT_FILTERS)
    assert all(f.provider == "glam" and f.description == "1 credits" for f in filters)


async def test_list_filters_nested_envelope(provider: GlamProvider, fake: FakeGlam) -> None:
    fake.fail_next(200, {"data": {"filters": [{"name": "vhs"}, "polaroid", {"filter_id": 3}]}},
                   path_contains="/filters")
    assert sorted(f.name for f in await provider.list_filters()) == ["polaroid", "vhs"]


async def test_list_filters_is_cached(session: aiohttp.ClientSession, provider: GlamProvider,
                                      fake: FakeGlam) -> None:
    for _ in range(3):
        assert len(await provider.list_filters()) == len(DEFAULT_FILTERS)
    assert len(fake.calls("GET", "/filters")) == 1
    uncached = make_provider(session, fake)
    uncached.filter_cache_s = 0
    await uncached.list_filters()
    await uncached.list_filters()
    assert len(fake.calls("GET", "/filters")) == 3


@pytest.mark.parametrize(("status", "body"), [(500, {"detail": "Internal Server Error"}),
                                              (404, {"detail": "Not Found"}),
                                              (200, {"unexpected": True})])
async def test_filter_list_failure_falls_back_to_glam_judging(
    provider: GlamProvider, fake: FakeGlam, photo: ImageInput, caplog: pytest.LogCaptureFixture,
    status: int, body: dict[str, object],
) -> None:
    fake.fail_next(status, body, path_contains="/filters", times=10)
    with caplog.at_level(logging.WARNING, logger="bot.providers.glam"):
        assert await provider.list_filters() == []
    assert "listing filters failed" in caplog.text
    # Without a list, names are not refused locally; Glam refuses an unknown one at submit, creating nothing.
    request = FilterRequest(image=photo, name="not_a_glam_filter")
    await provider.validate(request)
    with pytest.raises(ProviderRejectedError, match="not_a_glam_filter"):
        await provider.submit(request)
    assert fake.jobs == {}


async def test_filter_list_auth_error_propagates(provider: GlamProvider, fake: FakeGlam) -> None:
    fake.fail_next(401, {"detail": "Invalid API key"}, path_contains="/filters")
    with pytest.raises(ProviderAuthError):
        await provider.list_filters()


# --- uploads and scope ---------------------------------------------------------------------------------------


async def test_upload_endpoint_missing_is_a_clear_error(provider: GlamProvider, fake: FakeGlam,
                                                        photo: ImageInput) -> None:
    fake.upload_enabled = False
    with pytest.raises(ConfigError, match="upload") as caught:
        await provider.submit(TryonRequest(person=photo, garment=garment()))
    assert "glam" in str(caught.value)
    assert len(fake.calls("POST", "/upload")) == 1  # not retried, and the garment never tried
    assert fake.calls("POST", "/tryon") == []


async def test_scope(provider: GlamProvider, photo: ImageInput) -> None:
    edit = EditRequest(images=(photo,), prompt="make it blue")
    with pytest.raises(ConfigError):
        await provider.validate(edit)
    with pytest.raises(ConfigError):
        await provider.submit(edit)
    with pytest.raises(InputError):
        provider.resolve_size(Size.parse("square_hd"))


# --- the fake itself is strict where an adapter could slip ------------------------------------------------------


async def test_fake_is_strict(session: aiohttp.ClientSession, fake: FakeGlam, photo: ImageInput) -> None:
    api = f"{fake.base_url}/api/v1"
    auth = {"X-API-Key": KEY}

    async def post(path: str, body: object, headers: dict[str, str] | None = None) -> tuple[int, object]:
        async with session.post(f"{api}/{path}", json=body, headers=headers or auth) as resp:
            return resp.status, await resp.json()

    status, data = await post("generate", {"media_url": photo.data_uri(), "filter_name": "anime"})
    assert status == 422 and data["detail"][0]["loc"] == ["body", "media_url"]  # type: ignore[index]
    status, data = await post("generate", {"media_url": "https://example.com/a.png"})
    assert status == 422 and data == {"detail": [{"loc": ["body", "filter_name"], "msg": "field required",
                                                  "type": "value_error.missing"}]}
    status, data = await post("generate", {"media_url": f"{fake.base_url}/_files/nope.png", "filter_name": "anime"})
    assert status == 400
    status, _ = await post("tryon", {"media_url": "https://e.com/a", "garment_url": "https://e.com/b",
                                     "mask_type": "full"})
    assert status == 422
    status, _ = await post("generate", {}, headers={"Authorization": f"Bearer {KEY}"})
    assert status == 403
    status, _ = await post("generate", {}, headers={"X-API-Key": "nope"})
    assert status == 401

    status, data = await post("generate", {"media_url": "https://example.com/a.png", "filter_name": "anime"})
    event_id = data["event_id"]  # type: ignore[index]
    assert status == 200 and event_id.endswith("-u1")
    async with session.get(f"{api}/tryon/{event_id}", headers=auth) as resp:
        assert resp.status == 404  # filter jobs are not polled at the try-on endpoint

    form = aiohttp.FormData()
    form.add_field("image", photo.data, filename="a.png", content_type="image/png")
    async with session.post(f"{api}/upload", data=form, headers=auth) as resp:
        assert resp.status == 422 and "file" in json.dumps(await resp.json())
