"""NovitaProvider against FakeNovita over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.errors import (
    InputError,
    ProviderAuthError,
    ProviderProtocolError,
    ProviderRejectedError,
    ProviderUnavailableError,
)
from bot.operations import ImagineRequest, Size, SizePreset
from bot.providers.base import check_dimensions
from bot.providers.novita import PRESET_SIZES, NovitaProvider
from bot.providers.polling import PollSchedule, wait_for_result
from bot.providers.status import Failed, JobStatus, Queued, RemoteHandle, Running, Succeeded
from tests.conftest import LIMITS, make_http
from tests.fakes.base import JobScript
from tests.fakes.novita import FakeNovita

FAST = PollSchedule(min_s=0.01, max_s=0.05)
RESULT = "/v3/async/task-result"
SUBMIT = "/v3/async/glm-image"


@pytest.fixture
async def fake() -> AsyncIterator[FakeNovita]:
    server = FakeNovita(key="nv-secret-key-123")
    await server.start()
    yield server
    await server.stop()


def make_provider(session: aiohttp.ClientSession, fake: FakeNovita, *, key: str | None = None,
                  **kwargs: Any) -> NovitaProvider:
    key = fake.key if key is None else key
    http = make_http(session, "novita", {"Authorization": f"Bearer {key}", "Accept": "application/json"}, key)
    return NovitaProvider(http, LIMITS, base_url=fake.base_url, **kwargs)


@pytest.fixture
def provider(session: aiohttp.ClientSession, fake: FakeNovita) -> NovitaProvider:
    return make_provider(session, fake)


def submitted(fake: FakeNovita) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in fake.calls("POST", SUBMIT)]


async def run(provider: NovitaProvider, request: ImagineRequest, *, deadline_s: float = 10.0,
              seen: list[JobStatus] | None = None) -> JobStatus:
    await provider.validate(request)
    handle = await provider.submit(request)

    async def on_status(status: JobStatus) -> None:
        if seen is not None:
            seen.append(status)

    return await wait_for_result(provider, handle, deadline=time.monotonic() + deadline_s, schedule=FAST,
                                 on_status=on_status)


def task_result(status: str, **task: Any) -> dict[str, Any]:
    """A hand-made task-result body, for shapes the fake does not produce by itself."""
    return {"extra": {}, "task": {"task_id": "t", "status": status, **task}, "images": [], "videos": [],
            "audios": []}


async def eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait for something another task does (webhook deliveries run in the fake's background)."""
    end = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < end, "condition never became true"
        await asyncio.sleep(0.01)


# --- the happy path ----------------------------------------------------------------------------------------


async def test_imagine_walks_queued_processing_succeed_and_fetches_the_png(
    provider: NovitaProvider, fake: FakeNovita
) -> None:
    fake.script = JobScript(queue_polls=1, running_polls=3)
    seen: list[JobStatus] = []
    result = await run(provider, ImagineRequest(prompt="a lighthouse at dusk"), seen=seen)

    assert isinstance(result, Succeeded)
    assert isinstance(seen[0], Queued)
    progress = [s.progress for s in seen if isinstance(s, Running)]
    assert progress == sorted(progress) and len(progress) == 3 and all(p is not None for p in progress)
    assert result.seed == 158881667  # extra.seed arrives as a string
    assert len(result.outputs) == 1 and result.outputs[0].mime == "image/png" and not result.outputs[0].nsfw

    image = await provider.fetch(result.outputs[0])
    (name,) = fake.files
    assert image.data == fake.files[name] and image.mime == "image/png"

    (body,) = submitted(fake)
    assert body == {"prompt": "a lighthouse at dusk", "size": "1280x1280", "quality": "hd",
                    "watermark_enabled": True}
    (post,) = fake.calls("POST", SUBMIT)
    assert post.headers["Authorization"] == f"Bearer {fake.key}"
    for get in fake.calls("GET", RESULT):
        assert get.headers["Content-Type"] == "application/json"
        assert get.query == {"task_id": next(iter(fake.jobs))}


async def test_the_handle_survives_a_restart(provider: NovitaProvider, fake: FakeNovita,
                                             session: aiohttp.ClientSession) -> None:
    handle = await provider.submit(ImagineRequest(prompt="a fox"))
    restored = RemoteHandle.from_json(handle.to_json())
    # A new adapter (after a restart) finishes the job from the stored handle alone.
    result = await wait_for_result(make_provider(session, fake), restored, deadline=time.monotonic() + 10,
                                   schedule=FAST)
    assert isinstance(result, Succeeded)


async def test_watermark_can_be_turned_off_by_the_operator(session: aiohttp.ClientSession,
                                                           fake: FakeNovita) -> None:
    provider = make_provider(session, fake, watermark=False)
    await provider.submit(ImagineRequest(prompt="a fox"))
    assert submitted(fake)[0]["watermark_enabled"] is False


# --- sizes -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", list(SizePreset))
async def test_each_preset_sends_a_valid_size_of_the_same_aspect(
    provider: NovitaProvider, fake: FakeNovita, preset: SizePreset
) -> None:
    request = ImagineRequest(prompt="a fox", size=Size(preset=preset))
    await provider.validate(request)
    await provider.submit(request)  # the strict fake would answer 400 to an invalid size
    width, height = PRESET_SIZES[preset]
    assert submitted(fake)[0]["size"] == f"{width}x{height}"
    check_dimensions("novita", width, height, min_side=1024, max_side=2048, multiple=32, max_pixels=4_194_304)
    expected = {"square": 1, "portrait_4_3": 3 / 4, "portrait_16_9": 9 / 16, "landscape_4_3": 4 / 3,
                "landscape_16_9": 16 / 9}
    assert width / height == pytest.approx(expected[preset.value.removesuffix("_hd")])


@pytest.mark.parametrize("text", ["1568x1056", "1024x1728", "2048x2048", "1024x2048"])
async def test_valid_custom_sizes_go_through_unchanged(provider: NovitaProvider, fake: FakeNovita,
                                                       text: str) -> None:
    request = ImagineRequest(prompt="a fox", size=Size.parse(text))
    await provider.validate(request)
    await provider.submit(request)
    assert submitted(fake)[0]["size"] == text


@pytest.mark.parametrize("text", ["1000x1000", "1030x1024", "2048x2080", "960x1728"])
async def test_invalid_sizes_are_refused_with_the_valid_range_and_nothing_is_sent(
    provider: NovitaProvider, fake: FakeNovita, text: str
) -> None:
    request = ImagineRequest(prompt="a fox", size=Size.parse(text))
    with pytest.raises(InputError) as err:
        await provider.validate(request)
    message = str(err.value)
    assert text in message and "1024 to 2048" in message and "multiples of 32" in message
    assert "4,194,304 pixels" in message
    with pytest.raises(InputError):
        await provider.submit(request)
    assert fake.requests == []


# --- what GLM Image cannot do -------------------------------------------------------------------------------


async def test_more_than_one_image_is_refused_before_anything_is_sent(provider: NovitaProvider,
                                                                      fake: FakeNovita) -> None:
    request = ImagineRequest(prompt="a fox", count=2)
    with pytest.raises(InputError, match="one image per job"):
        await provider.validate(request)
    with pytest.raises(InputError, match="one image per job"):
        await provider.submit(request)
    assert fake.requests == []


async def test_a_seed_is_refused_rather_than_silently_dropped(provider: NovitaProvider,
                                                              fake: FakeNovita) -> None:
    request = ImagineRequest(prompt="a fox", seed=42)
    with pytest.raises(InputError, match="seed"):
        await provider.validate(request)
    assert fake.requests == []


# --- statuses ------------------------------------------------------------------------------------------------


async def test_failed_task_reports_novitas_reason(provider: NovitaProvider, fake: FakeNovita) -> None:
    fake.script = JobScript(outcome="fail", fail_reason="content violates the usage policy")
    result = await run(provider, ImagineRequest(prompt="a fox"))
    assert isinstance(result, Failed)
    assert result.reason == "content violates the usage policy"
    assert result.charged is None and result.code == "task_failed"


async def test_unknown_status_is_tolerated_then_the_job_succeeds(provider: NovitaProvider,
                                                                 fake: FakeNovita) -> None:
    fake.unknown_next = 2
    seen: list[JobStatus] = []
    result = await run(provider, ImagineRequest(prompt="a fox"), seen=seen)
    assert isinstance(result, Succeeded)
    assert seen[:2] == [Running(), Running()]  # UNKNOWN: still working, nothing known
    assert len(fake.calls("GET", RESULT)) >= 5


async def test_a_truly_unknown_status_ends_the_job_as_a_protocol_failure(provider: NovitaProvider,
                                                                         fake: FakeNovita) -> None:
    fake.fail_next(200, task_result("TASK_STATUS_EXPLODED"), path_contains=RESULT)
    result = await run(provider, ImagineRequest(prompt="a fox"))
    assert isinstance(result, Failed)
    assert result.code == "ProviderProtocolError" and "TASK_STATUS_EXPLODED" in result.reason


async def test_numbers_as_strings_are_read(provider: NovitaProvider, fake: FakeNovita) -> None:
    handle = await provider.submit(ImagineRequest(prompt="a fox"))
    fake.fail_next(200, task_result("TASK_STATUS_PROCESSING", eta="3", progress_percent="40"),
                   path_contains=RESULT)
    assert await provider.poll(handle) == Running(progress=40.0, eta_s=3.0)
    fake.fail_next(200, task_result("TASK_STATUS_QUEUED", eta="", progress_percent=None), path_contains=RESULT)
    assert await provider.poll(handle) == Queued()


@pytest.mark.parametrize("as_string", [True, False])
async def test_image_url_ttl_as_string_or_int_both_parse(
    provider: NovitaProvider, fake: FakeNovita, session: aiohttp.ClientSession, as_string: bool
) -> None:
    fake.ttl_as_string = as_string
    fake.script = JobScript(queue_polls=0, running_polls=0)
    handle = await provider.submit(ImagineRequest(prompt="a fox"))
    status = await provider.poll(handle)
    assert isinstance(status, Succeeded)
    # The fake really did send the type asked for.
    async with session.get(f"{fake.base_url}{RESULT}", params={"task_id": handle.remote_id},
                           headers={"Authorization": f"Bearer {fake.key}",
                                    "Content-Type": "application/json"}) as resp:
        ttl = (await resp.json())["images"][0]["image_url_ttl"]
    assert ttl == ("3600" if as_string else 3600)


async def test_succeed_without_images_is_a_failure(provider: NovitaProvider, fake: FakeNovita) -> None:
    handle = await provider.submit(ImagineRequest(prompt="a fox"))
    body = task_result("TASK_STATUS_SUCCEED")
    body["images"] = None
    fake.fail_next(200, body, path_contains=RESULT)
    status = await provider.poll(handle)
    assert isinstance(status, Failed) and status.code == "no_images"


async def test_nsfw_flag_is_carried_to_the_output(provider: NovitaProvider, fake: FakeNovita) -> None:
    fake.script = JobScript(queue_polls=0, running_polls=0, nsfw=True)
    result = await run(provider, ImagineRequest(prompt="a fox"))
    assert isinstance(result, Succeeded) and result.outputs[0].nsfw


async def test_a_task_novita_does_not_know_ends_as_not_found(provider: NovitaProvider) -> None:
    handle = RemoteHandle(provider="novita", remote_id="no-such-task", operation="imagine")
    status = await provider.poll(handle)
    assert isinstance(status, Failed) and status.code == "not_found"


async def test_a_task_result_of_the_wrong_shape_is_a_protocol_error(provider: NovitaProvider,
                                                                    fake: FakeNovita) -> None:
    handle = await provider.submit(ImagineRequest(prompt="a fox"))
    fake.fail_next(200, {"task": {"status": "TASK_STATUS_SUCCEED"}, "images": "nope"}, path_contains=RESULT)
    with pytest.raises(ProviderProtocolError):
        await provider.poll(handle)


async def test_a_job_that_never_finishes_hits_its_deadline(provider: NovitaProvider, fake: FakeNovita) -> None:
    fake.script = JobScript(outcome="never")
    result = await run(provider, ImagineRequest(prompt="a fox"), deadline_s=0.3)
    assert isinstance(result, Failed) and result.code == "deadline" and result.retryable
    # No cancel exists at Novita, so nothing but polls followed the submit.
    assert {(r.method, r.path) for r in fake.requests} == {("POST", SUBMIT), ("GET", RESULT)}


# --- keys and errors ----------------------------------------------------------------------------------------


async def test_a_rejected_key_is_an_auth_error_that_never_shows_the_key(session: aiohttp.ClientSession,
                                                                        fake: FakeNovita) -> None:
    wrong = "nv-wrong-key-456"
    provider = make_provider(session, fake, key=wrong)
    with pytest.raises(ProviderAuthError) as err:
        await provider.submit(ImagineRequest(prompt="a fox"))
    assert str(err.value).startswith("novita:") and err.value.status == 401
    assert wrong not in str(err.value)
    check = await provider.check_key()
    assert check.ok is False and wrong not in check.message
    assert fake.jobs == {}


async def test_an_echoed_key_is_redacted(session: aiohttp.ClientSession, fake: FakeNovita) -> None:
    provider = make_provider(session, fake)
    fake.fail_next(401, {"code": 401, "reason": "INVALID_API_KEY", "message": f"bad key {fake.key}",
                         "metadata": {}})
    with pytest.raises(ProviderAuthError) as err:
        await provider.submit(ImagineRequest(prompt="a fox"))
    assert fake.key not in str(err.value)


async def test_check_key_accepts_a_good_key_without_submitting(provider: NovitaProvider,
                                                               fake: FakeNovita) -> None:
    check = await provider.check_key()
    assert check.ok is True
    assert fake.calls("POST") == [] and len(fake.calls("GET", RESULT)) == 1


async def test_403_account_verification_surfaces_novitas_message(provider: NovitaProvider,
                                                                 fake: FakeNovita) -> None:
    fake.fail_next(403, {"code": 403, "reason": "ACCOUNT_NOT_VERIFIED",
                         "message": "Please complete account verification to use this model.",
                         "metadata": {}})
    with pytest.raises(ProviderAuthError) as err:
        await provider.submit(ImagineRequest(prompt="a fox"))
    assert "Please complete account verification to use this model." in str(err.value)
    assert err.value.status == 403


async def test_429_with_retry_after_is_waited_out_and_submits_once(provider: NovitaProvider,
                                                                   fake: FakeNovita) -> None:
    fake.fail_next(429, {"code": 429, "reason": "RATE_LIMIT_EXCEEDED", "message": "too many requests",
                         "metadata": {}}, headers={"Retry-After": "0.3"}, method="POST")
    started = time.monotonic()
    handle = await provider.submit(ImagineRequest(prompt="a fox"))
    assert time.monotonic() - started >= 0.3
    assert len(fake.calls("POST", SUBMIT)) == 2  # the refused one and the accepted one
    assert list(fake.jobs) == [handle.remote_id]  # but only one job, so one charge


async def test_503_on_submit_is_not_retried(provider: NovitaProvider, fake: FakeNovita) -> None:
    fake.fail_next(503, {"code": 503, "reason": "SERVICE_UNAVAILABLE", "message": "overloaded",
                         "metadata": {}}, method="POST")
    with pytest.raises(ProviderUnavailableError, match="overloaded"):
        await provider.submit(ImagineRequest(prompt="a fox"))
    assert len(fake.calls("POST", SUBMIT)) == 1


async def test_503_on_poll_is_retried(provider: NovitaProvider, fake: FakeNovita) -> None:
    handle = await provider.submit(ImagineRequest(prompt="a fox"))
    fake.fail_next(503, {"code": 503, "reason": "SERVICE_UNAVAILABLE", "message": "overloaded",
                         "metadata": {}}, times=2, method="GET")
    status = await provider.poll(handle)
    assert isinstance(status, Queued)
    assert len(fake.calls("GET", RESULT)) == 3


async def test_a_400_from_novita_keeps_its_message(provider: NovitaProvider, fake: FakeNovita) -> None:
    fake.fail_next(400, {"code": 400, "reason": "INVALID_REQUEST_BODY", "message": "prompt is too long",
                         "metadata": {}}, method="POST")
    with pytest.raises(ProviderRejectedError, match="prompt is too long"):
        await provider.submit(ImagineRequest(prompt="a fox"))


# --- webhooks ------------------------------------------------------------------------------------------------


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, asyncio.Queue[dict[str, Any]]]]:
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        await events.put(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks/novita", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/hooks/novita", events
    await runner.cleanup()


async def test_webhook_url_rides_in_extra_and_novita_posts_the_result(
    session: aiohttp.ClientSession, fake: FakeNovita, receiver: tuple[str, asyncio.Queue[dict[str, Any]]]
) -> None:
    url, events = receiver
    provider = make_provider(session, fake, webhook_url=url)
    handle = await provider.submit(ImagineRequest(prompt="a fox"))
    assert submitted(fake)[0]["extra"] == {"webhook": {"url": url}}

    event = await asyncio.wait_for(events.get(), timeout=5)
    assert event["event_type"] == "ASYNC_TASK_RESULT"
    payload = event["payload"]
    assert payload["task"]["task_id"] == handle.remote_id
    # The payload is exactly a task-result body, so the adapter's own parser reads it.
    status = provider.parse_result(payload)
    assert isinstance(status, Succeeded) and status.outputs[0].url == payload["images"][0]["image_url"]
    # The receiver saw the event before its 204 reached the fake.
    await eventually(lambda: len(fake.webhook_deliveries) == 1)
    assert [d.status for d in fake.webhook_deliveries] == [204]


async def test_fake_retries_a_webhook_the_receiver_refused(
    session: aiohttp.ClientSession, fake: FakeNovita, receiver: tuple[str, asyncio.Queue[dict[str, Any]]]
) -> None:
    url, events = receiver
    fake.script = JobScript(outcome="fail", fail_reason="nope")
    # A receiver path that answers 404: Novita retries on any non-2xx, then gives up.
    bad_url = url.replace("/hooks/novita", "/missing")
    provider = make_provider(session, fake, webhook_url=bad_url)
    fake.webhook_retries = 2
    await provider.submit(ImagineRequest(prompt="a fox"))
    await eventually(lambda: len(fake.webhook_deliveries) == 3)
    assert [d.status for d in fake.webhook_deliveries] == [404, 404, 404]
    assert fake.webhook_deliveries[0].body["payload"]["task"]["status"] == "TASK_STATUS_FAILED"
    assert events.empty()


async def test_no_webhook_means_no_extra(provider: NovitaProvider, fake: FakeNovita) -> None:
    await provider.submit(ImagineRequest(prompt="a fox"))
    assert "extra" not in submitted(fake)[0]


# --- the fake itself is strict where the docs are --------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "fragment"),
    [
        ({"prompt": "x", "size": "1000x1000"}, "application/json", "size must be"),
        ({"prompt": "x", "size": "1024X1024"}, "application/json", "size must be"),
        ({"prompt": "x", "seed": 1}, "application/json", "unknown field"),
        ({"size": "1280x1280"}, "application/json", "prompt is required"),
        ({"prompt": "x", "quality": "standard"}, "application/json", "quality"),
        ({"prompt": "x"}, "text/plain", "Content-Type"),
    ],
)
async def test_fake_refuses_what_novita_documents_as_invalid(
    session: aiohttp.ClientSession, fake: FakeNovita, body: dict[str, Any], content_type: str, fragment: str
) -> None:
    headers = {"Authorization": f"Bearer {fake.key}", "Content-Type": content_type}
    async with session.post(f"{fake.base_url}{SUBMIT}", data=json.dumps(body), headers=headers) as resp:
        assert resp.status == 400
        error = await resp.json()
    assert set(error) == {"code", "reason", "message", "metadata"} and fragment in error["message"]
    assert fake.jobs == {}


async def test_fake_requires_content_type_on_the_result_get(session: aiohttp.ClientSession,
                                                            fake: FakeNovita) -> None:
    async with session.get(f"{fake.base_url}{RESULT}", params={"task_id": "x"},
                           headers={"Authorization": f"Bearer {fake.key}"}) as resp:
        assert resp.status == 400
