"""PixazoProvider against FakePixazo over real sockets on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bot.errors import (
    InputError,
    ProviderAuthError,
    ProviderProtocolError,
    ProviderRejectedError,
    ProviderUnavailableError,
)
from bot.operations import EditRequest, ImageInput, ImagineRequest, Size
from bot.providers.http import provider_message
from bot.providers.pixazo import PixazoProvider, PollStyle
from bot.providers.polling import PollSchedule, wait_for_result
from bot.providers.status import Cancelled, Failed, JobStatus, Queued, RemoteHandle, Running, Succeeded, Terminal
from tests.conftest import LIMITS, image_input, make_http
from tests.fakes.base import JobScript
from tests.fakes.pixazo import I2I, INVALID_KEY, RATE_LIMITED, T2I, FakePixazo

FAST = PollSchedule(min_s=0.01, max_s=0.05)


@pytest.fixture
async def fake() -> AsyncIterator[FakePixazo]:
    server = FakePixazo()
    await server.start()
    yield server
    await server.stop()


def make_provider(session: aiohttp.ClientSession, fake: FakePixazo, *, key: str | None = None,
                  poll_style: PollStyle = "result") -> PixazoProvider:
    """The provider as the registry builds it; key=None sends the fake's key, "" sends no key header."""
    key = fake.key if key is None else key
    headers = {"Cache-Control": "no-cache"}
    if key:
        headers["Ocp-Apim-Subscription-Key"] = key
    return PixazoProvider(make_http(session, "pixazo", headers, key), LIMITS, base_url=fake.base_url,
                          poll_style=poll_style)


async def run(provider: PixazoProvider, request: ImagineRequest | EditRequest,
              deadline_s: float = 10.0) -> tuple[RemoteHandle, Terminal]:
    handle = await provider.submit(request)
    result = await wait_for_result(provider, handle, deadline=time.monotonic() + deadline_s, schedule=FAST)
    return handle, result


def submits(fake: FakePixazo, path: str = T2I) -> list[Any]:
    """Submit requests exactly (the result endpoint's path starts with the submit path)."""
    return [r for r in fake.calls("POST") if r.path == path]


async def check_outputs(provider: PixazoProvider, fake: FakePixazo, result: Terminal, count: int) -> None:
    assert isinstance(result, Succeeded), result
    assert len(result.outputs) == count
    for output in result.outputs:
        assert output.url is not None
        fetched = await provider.fetch(output)
        assert fetched.data == fake.files[output.url.rsplit("/", 1)[1]]
        assert fetched.mime == "image/png"


# --- happy paths ------------------------------------------------------------------------------------------


async def test_imagine_result_style(session: aiohttp.ClientSession, fake: FakePixazo) -> None:
    provider = make_provider(session, fake)
    request = ImagineRequest(prompt="a lighthouse at dusk", size=Size.parse("landscape_4_3"), seed=7, count=2)
    handle = await provider.submit(request)
    seen: list[JobStatus] = []

    async def record(status: JobStatus) -> None:
        seen.append(status)

    result = await wait_for_result(provider, handle, deadline=time.monotonic() + 10, schedule=FAST,
                                   on_status=record)

    assert [type(s) for s in seen] == [Queued, Running, Succeeded]
    await check_outputs(provider, fake, result, 2)
    (submit,) = submits(fake)
    assert json.loads(submit.body) == {"prompt": "a lighthouse at dusk", "num_images": 2,
                                       "enable_safety_checker": True, "image_size": "landscape_4_3", "seed": 7}
    assert submit.headers["Ocp-Apim-Subscription-Key"] == fake.key
    assert submit.headers["Cache-Control"] == "no-cache"
    assert handle.remote_id in fake.jobs
    assert handle.result_url == f"{fake.base_url}{T2I}-result"
    assert handle.status_url == f"{fake.base_url}/v2/requests/status/{handle.remote_id}"
    assert handle.extra == {"poll_style": "result"}
    polls = fake.calls("POST", f"{T2I}-result")
    assert len(polls) == fake.jobs[handle.remote_id].polls == 3  # queued, processing, completed
    assert all(json.loads(p.body) == {"request_id": handle.remote_id} for p in polls)
    assert not fake.calls(path_contains="/v2/requests/status/")


async def test_edit_result_style(session: aiohttp.ClientSession, fake: FakePixazo, photo: ImageInput) -> None:
    provider = make_provider(session, fake)
    second = image_input(96, 64, "second.png")
    request = EditRequest(images=(photo, second), prompt="make it snow", size=Size.parse("1024x768"),
                          steps=20, guidance=2.5, output_format="png", seed=3)
    handle, result = await run(provider, request)

    await check_outputs(provider, fake, result, 1)
    (submit,) = submits(fake, I2I)
    body = json.loads(submit.body)
    assert body["image_size"] == {"width": 1024, "height": 768}
    assert (body["num_inference_steps"], body["guidance_scale"], body["output_format"]) == (20, 2.5, "png")
    assert body["seed"] == 3 and body["num_images"] == 1 and body["enable_safety_checker"] is True
    sent = [base64.b64decode(uri.split(",", 1)[1]) for uri in body["image_urls"]]
    assert sent == [photo.data, second.data]
    assert all(uri.startswith("data:image/png;base64,") for uri in body["image_urls"])
    assert handle.operation == "edit"
    assert handle.result_url == f"{fake.base_url}{I2I}-result"
    assert fake.calls("POST", f"{I2I}-result")
    assert not fake.calls("POST", f"{T2I}-result")


async def test_status_style_polls_the_generic_endpoint_with_get(session: aiohttp.ClientSession,
                                                              fake: FakePixazo, photo: ImageInput) -> None:
    provider = make_provider(session, fake, poll_style="status")
    handle, result = await run(provider, EditRequest(images=(photo,), prompt="watercolour", count=2))

    await check_outputs(provider, fake, result, 2)
    assert handle.extra == {"poll_style": "status"}
    polls = fake.calls(path_contains="/v2/requests/status/")
    assert [p.method for p in polls] == ["GET"] * 3
    assert all(p.path == f"/v2/requests/status/{handle.remote_id}" for p in polls)
    assert not fake.calls(path_contains="-request-result")


async def test_generic_status_url_when_submit_gives_no_polling_url(session: aiohttp.ClientSession,
                                                                 fake: FakePixazo) -> None:
    fake.give_polling_url = False
    provider = make_provider(session, fake, poll_style="status")
    handle, result = await run(provider, ImagineRequest(prompt="a red fox"))

    assert isinstance(result, Succeeded)
    assert handle.status_url == f"{fake.base_url}/v2/requests/status/{handle.remote_id}"


async def test_status_get_405_falls_back_to_post_and_remembers(session: aiohttp.ClientSession,
                                                             fake: FakePixazo) -> None:
    fake.status_post_only = True
    provider = make_provider(session, fake, poll_style="status")
    _, first = await run(provider, ImagineRequest(prompt="one"))
    _, second = await run(provider, ImagineRequest(prompt="two"))

    await check_outputs(provider, fake, first, 1)
    await check_outputs(provider, fake, second, 1)
    # One GET ever: the 405 taught this provider instance to POST from then on.
    assert len(fake.calls("GET", "/v2/requests/status/")) == 1
    assert len(fake.calls("POST", "/v2/requests/status/")) == sum(job.polls for job in fake.jobs.values()) == 6


async def test_a_stored_handle_keeps_its_poll_style(session: aiohttp.ClientSession, fake: FakePixazo) -> None:
    handle = await make_provider(session, fake, poll_style="status").submit(ImagineRequest(prompt="resume me"))
    restored = RemoteHandle.from_json(handle.to_json())
    # A restarted process whose default style is different still polls the way the job began.
    other = make_provider(session, fake, poll_style="result")
    result = await wait_for_result(other, restored, deadline=time.monotonic() + 10, schedule=FAST)

    assert isinstance(result, Succeeded)
    assert fake.calls("GET", "/v2/requests/status/")
    assert not fake.calls(path_contains="-request-result")


@pytest.mark.parametrize("as_string", [True, False])
async def test_media_url_as_string_or_list(session: aiohttp.ClientSession, fake: FakePixazo,
                                           as_string: bool) -> None:
    fake.media_url_as_string = as_string
    provider = make_provider(session, fake)
    _, result = await run(provider, ImagineRequest(prompt="a cat", count=1 if as_string else 3))
    await check_outputs(provider, fake, result, 1 if as_string else 3)


async def test_lowercase_statuses(session: aiohttp.ClientSession, fake: FakePixazo) -> None:
    fake.lowercase_status = True
    provider = make_provider(session, fake)
    _, result = await run(provider, ImagineRequest(prompt="a cat"))
    await check_outputs(provider, fake, result, 1)


async def test_images_url_shape_is_tolerated(session: aiohttp.ClientSession, fake: FakePixazo) -> None:
    provider = make_provider(session, fake)
    handle = await provider.submit(ImagineRequest(prompt="a cat"))
    url = fake.output_urls(fake.jobs[handle.remote_id])[0]
    fake.fail_next(200, {"status": "Completed", "images": [{"url": url}], "seed": "42",
                         "has_nsfw_concepts": [True]}, path_contains="-request-result")

    result = await provider.poll(handle)

    assert isinstance(result, Succeeded)
    assert [o.url for o in result.outputs] == [url] and result.outputs[0].nsfw and result.seed == 42
    await check_outputs(provider, fake, result, 1)


# --- job failures ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "retryable"), [("FAILED", False), ("ERROR", True)])
async def test_failed_job_keeps_the_providers_reason(session: aiohttp.ClientSession, fake: FakePixazo,
                                                     status: str, retryable: bool) -> None:
    fake.fail_status = status
    fake.script = JobScript(outcome="fail", fail_reason="Prompt was flagged by the safety checker.")
    provider = make_provider(session, fake)
    _, result = await run(provider, ImagineRequest(prompt="something"))

    assert isinstance(result, Failed)
    assert result.reason == "Prompt was flagged by the safety checker."
    assert result.code == "GenerationFailed"
    assert result.retryable is retryable
    assert result.charged is None


@pytest.mark.parametrize("body", [
    {"status": "FAILED", "error": "plain string error"},
    {"status": "failed", "message": "plain string error"},
    {"status": "ERROR", "output": {"error": {"message": "plain string error"}}},
])
async def test_failure_reason_shapes(session: aiohttp.ClientSession, fake: FakePixazo,
                                     body: dict[str, Any]) -> None:
    provider = make_provider(session, fake)
    handle = await provider.submit(ImagineRequest(prompt="x"))
    fake.fail_next(200, body, path_contains="-request-result")
    result = await provider.poll(handle)
    assert isinstance(result, Failed) and result.reason == "plain string error"


async def test_cancelled_job(session: aiohttp.ClientSession, fake: FakePixazo) -> None:
    provider = make_provider(session, fake)
    handle = await provider.submit(ImagineRequest(prompt="x"))
    fake.jobs[handle.remote_id].cancelled = True
    assert isinstance(await provider.poll(handle), Cancelled)
    assert await provider.cancel(handle) is False  # no documented cancel endpoint: nothing is sent
    assert not fake.calls(path_contains="cancel")


async def test_completed_without_media_is_a_failure(session: aiohttp.ClientSession, fake: FakePixazo) -> None:
    provider = make_provider(session, fake)
    handle = await provider.submit(ImagineRequest(prompt="x"))
    fake.fail_next(200, {"status": "COMPLETED", "output": {"media_url": []}}, path_contains="-request-result")
    result = await provider.poll(handle)
    assert isinstance(result, Failed) and result.code == "no_images"


@pytest.mark.parametrize("body", [{"status": "SLEEPING"}, {"output": None}])
async def test_unknown_or_missing_status_is_a_protocol_error(session: aiohttp.ClientSession, fake: FakePixazo,
                                                             body: dict[str, Any]) -> None:
    provider = make_provider(session, fake)
    handle = await provider.submit(ImagineRequest(prompt="x"))
    fake.fail_next(200, body, path_contains="-request-result")
    with pytest.raises(ProviderProtocolError, match="pixazo"):
        await provider.poll(handle)


async def test_never_finishing_job_hits_the_deadline(session: aiohttp.ClientSession, fake: FakePixazo) -> None:
    fake.script = JobScript(outcome="never")
    provider = make_provider(session, fake)
    _, result = await run(provider, ImagineRequest(prompt="x"), deadline_s=0.3)
    assert isinstance(result, Failed) and result.code == "deadline" and result.retryable


# --- keys --------------------------------------------------------------------------------------------------


async def test_rejected_key(session: aiohttp.ClientSession, fake: FakePixazo) -> None:
    wrong = "wrong-key-abcdef123456"
    provider = make_provider(session, fake, key=wrong)
    with pytest.raises(ProviderAuthError) as caught:
        await provider.submit(ImagineRequest(prompt="x"))

    message = str(caught.value)
    assert message.startswith("pixazo:")
    assert "invalid subscription key" in message
    assert wrong not in message and fake.key not in message
    assert caught.value.status == 401
    assert len(submits(fake)) == 1 and not fake.jobs  # auth errors are never retried
    check = await provider.check_key()
    assert check.ok is False and "invalid subscription key" in check.message and wrong not in check.message


async def test_missing_key(session: aiohttp.ClientSession, fake: FakePixazo) -> None:
    provider = make_provider(session, fake, key="")
    with pytest.raises(ProviderAuthError, match=r"^pixazo: .*missing subscription key"):
        await provider.submit(ImagineRequest(prompt="x"))
    assert not fake.jobs


@pytest.mark.parametrize("post_only", [False, True])
async def test_check_key_accepted_costs_nothing(session: aiohttp.ClientSession, fake: FakePixazo,
                                                post_only: bool) -> None:
    fake.status_post_only = post_only  # a 405 still means the gateway accepted the key
    check = await make_provider(session, fake).check_key()
    assert check.ok is True
    (call,) = fake.requests
    assert call.method == "GET" and call.path == "/v2/requests/status/00000000-0000-0000-0000-000000000000"
    assert not fake.jobs


def test_provider_message_reads_both_error_shapes() -> None:
    apim = json.dumps({"statusCode": 401, "message": INVALID_KEY}).encode()
    app = json.dumps({"error": {"code": "InvalidInput", "message": "prompt is required"}}).encode()
    assert provider_message(apim) == INVALID_KEY
    assert provider_message(app) == "prompt is required"


async def test_application_error_keeps_pixazos_words(session: aiohttp.ClientSession, fake: FakePixazo) -> None:
    fake.fail_next(400, {"error": {"code": "InvalidInput", "message": "image_urls could not be downloaded"}},
                   method="POST")
    provider = make_provider(session, fake)
    with pytest.raises(ProviderRejectedError, match="image_urls could not be downloaded") as caught:
        await provider.submit(ImagineRequest(prompt="x"))
    assert caught.value.status == 400


# --- throttling and transient faults ------------------------------------------------------------------------


async def test_429_on_submit_waits_retry_after_and_creates_one_job(session: aiohttp.ClientSession,
                                                                   fake: FakePixazo) -> None:
    fake.fail_next(429, RATE_LIMITED, headers={"Retry-After": "1"}, method="POST")
    provider = make_provider(session, fake)
    started = time.monotonic()
    handle = await provider.submit(ImagineRequest(prompt="x"))

    assert time.monotonic() - started >= 0.95
    assert len(submits(fake)) == 2  # the throttled one, which created nothing, and the real one
    assert list(fake.jobs) == [handle.remote_id]


async def test_429_on_poll_waits_retry_after(session: aiohttp.ClientSession, fake: FakePixazo) -> None:
    provider = make_provider(session, fake)
    handle = await provider.submit(ImagineRequest(prompt="x"))
    fake.fail_next(429, RATE_LIMITED, headers={"Retry-After": "1"}, path_contains="-request-result")
    started = time.monotonic()
    result = await wait_for_result(provider, handle, deadline=time.monotonic() + 10, schedule=FAST)

    assert time.monotonic() - started >= 0.95
    await check_outputs(provider, fake, result, 1)
    assert len(fake.calls("POST", "-request-result")) == fake.jobs[handle.remote_id].polls + 1


async def test_500_on_submit_is_not_retried(session: aiohttp.ClientSession, fake: FakePixazo) -> None:
    fake.fail_next(500, {"error": {"code": "InternalError", "message": "upstream failure"}}, method="POST")
    provider = make_provider(session, fake)
    with pytest.raises(ProviderUnavailableError, match="upstream failure"):
        await provider.submit(ImagineRequest(prompt="x"))
    # The job might exist upstream; sending again could pay twice.
    assert len(submits(fake)) == 1


async def test_502_on_poll_is_retried(session: aiohttp.ClientSession, fake: FakePixazo) -> None:
    provider = make_provider(session, fake)
    handle = await provider.submit(ImagineRequest(prompt="x"))
    fake.fail_next(502, "<html>502 Bad Gateway</html>", times=2, path_contains="-request-result")
    result = await wait_for_result(provider, handle, deadline=time.monotonic() + 10, schedule=FAST)

    await check_outputs(provider, fake, result, 1)
    assert len(fake.calls("POST", "-request-result")) == fake.jobs[handle.remote_id].polls + 2


async def test_malformed_json_on_submit(session: aiohttp.ClientSession, fake: FakePixazo) -> None:
    fake.malformed_next = 1
    with pytest.raises(ProviderProtocolError, match="not JSON"):
        await make_provider(session, fake).submit(ImagineRequest(prompt="x"))


async def test_one_malformed_poll_is_looked_at_again(session: aiohttp.ClientSession, fake: FakePixazo) -> None:
    provider = make_provider(session, fake)
    handle = await provider.submit(ImagineRequest(prompt="x"))
    fake.malformed_next = 1
    result = await wait_for_result(provider, handle, deadline=time.monotonic() + 10, schedule=FAST)
    await check_outputs(provider, fake, result, 1)


async def test_malformed_polls_in_a_row_end_the_wait(session: aiohttp.ClientSession, fake: FakePixazo) -> None:
    provider = make_provider(session, fake)
    handle = await provider.submit(ImagineRequest(prompt="x"))
    fake.malformed_next = 10
    result = await wait_for_result(provider, handle, deadline=time.monotonic() + 10, schedule=FAST)
    assert isinstance(result, Failed) and result.code == "malformed_response"


@pytest.mark.parametrize("body", [{"polling_url": "/x"}, {"request_id": True}, ["not", "an", "object"]])
async def test_submit_answer_without_request_id(session: aiohttp.ClientSession, fake: FakePixazo,
                                                body: Any) -> None:
    fake.fail_next(200, body, method="POST")
    with pytest.raises(ProviderProtocolError):
        await make_provider(session, fake).submit(ImagineRequest(prompt="x"))


async def test_polling_url_on_another_host_is_not_sent_the_key(session: aiohttp.ClientSession,
                                                               fake: FakePixazo) -> None:
    fake.fail_next(200, {"request_id": "abc", "polling_url": "https://elsewhere.example/v2/requests/status/abc"},
                   method="POST")
    handle = await make_provider(session, fake).submit(ImagineRequest(prompt="x"))
    assert handle.status_url == f"{fake.base_url}/v2/requests/status/abc"


async def test_relative_polling_url_is_made_absolute(session: aiohttp.ClientSession, fake: FakePixazo) -> None:
    fake.fail_next(200, {"request_id": "abc", "polling_url": f"{T2I}-result"}, method="POST")
    handle = await make_provider(session, fake).submit(ImagineRequest(prompt="x"))
    # A model-specific result URL lands where the result style will POST to it.
    assert handle.result_url == f"{fake.base_url}{T2I}-result"
    assert handle.status_url == f"{fake.base_url}/v2/requests/status/abc"


# --- refused before sending ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["1000x768", "4096x1024", "128x128"])
async def test_invalid_explicit_size_is_refused_before_sending(session: aiohttp.ClientSession,
                                                               fake: FakePixazo, size: str) -> None:
    provider = make_provider(session, fake)
    with pytest.raises(InputError, match=r"256 to 2048, in multiples of 32"):
        await provider.submit(ImagineRequest(prompt="x", size=Size.parse(size)))
    assert not fake.requests


async def test_over_long_prompt_is_refused_before_sending(session: aiohttp.ClientSession, fake: FakePixazo,
                                                          photo: ImageInput) -> None:
    provider = make_provider(session, fake)
    with pytest.raises(InputError, match="limit is 1000"):
        await provider.submit(EditRequest(images=(photo,), prompt="x" * 1001))
    assert not fake.requests


@pytest.mark.parametrize(("steps", "guidance", "words"), [(5, None, "steps"), (None, 12.0, "guidance")])
async def test_out_of_range_steps_or_guidance_refused(session: aiohttp.ClientSession, fake: FakePixazo,
                                                      photo: ImageInput, steps: int | None,
                                                      guidance: float | None, words: str) -> None:
    provider = make_provider(session, fake)
    with pytest.raises(InputError, match=words):
        await provider.submit(EditRequest(images=(photo,), prompt="x", steps=steps, guidance=guidance))
    assert not fake.requests


# --- the fake itself is strict ------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "body", "words"), [
    (T2I, {"num_images": 1}, "prompt is required"),
    (T2I, {"prompt": "x", "num_images": 5}, "num_images"),
    (T2I, {"prompt": "x", "image_size": "huge"}, "image_size"),
    (T2I, {"prompt": "x", "image_size": {"width": 1000, "height": 768}}, "multiples of 32"),
    (T2I, {"prompt": "x", "image_urls": ["https://a.example/x.png"]}, "Unknown field"),
    (T2I, {"prompt": "x", "output_format": "gif"}, "output_format"),
    (I2I, {"prompt": "x"}, "image_urls is required"),
    (I2I, {"prompt": "x", "image_urls": ["https://a.example/x.png"] * 5}, "at most 4"),
    (I2I, {"prompt": "x", "image_urls": ["data:image/png;base64,@@@"]}, "base64"),
    (I2I, {"prompt": "x", "image_urls": ["file:///etc/passwd"]}, "image_urls must be"),
    (I2I, {"prompt": "x", "image_urls": ["https://a.example/x.png"], "num_inference_steps": 5}, "num_inference"),
    (I2I, {"prompt": "x", "image_urls": ["https://a.example/x.png"], "guidance_scale": 0}, "guidance_scale"),
])
async def test_fake_refuses_what_the_schema_refuses(session: aiohttp.ClientSession, fake: FakePixazo,
                                                    path: str, body: dict[str, Any], words: str) -> None:
    async with session.post(f"{fake.base_url}{path}", json=body,
                            headers={"Ocp-Apim-Subscription-Key": fake.key}) as resp:
        assert resp.status == 400
        answer = await resp.json()
    assert answer["error"]["code"] == "InvalidInput" and words in answer["error"]["message"]
    assert not fake.jobs
