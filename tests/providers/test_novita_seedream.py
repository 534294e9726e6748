"""Novita's Seedream 5.0 lite (synchronous) and retired-model detection, against FakeNovita over real sockets."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bot.errors import InputError, ModelRetiredError, ProviderRejectedError
from bot.operations import EditRequest, ImagineRequest, Size, SizePreset
from bot.providers.http import HttpPolicy
from bot.providers.novita import NovitaProvider
from bot.providers.novita_seedream import PRESET_SIZES, NovitaSeedreamProvider
from bot.providers.status import Failed, RemoteHandle, Succeeded
from bot.providers.synchronous import SynchronousCallInterrupted, placeholder
from tests.conftest import FAST_POLICY, LIMITS, image_input, make_http
from tests.fakes.novita import FakeNovita

SEEDREAM = "/v3/seedream-5.0-lite"
GLM = "/v3/async/glm-image"


@pytest.fixture
async def fake() -> AsyncIterator[FakeNovita]:
    server = FakeNovita(key="nv-seedream-key-456")
    await server.start()
    yield server
    await server.stop()


def make_provider(session: aiohttp.ClientSession, fake: FakeNovita, *, policy: HttpPolicy = FAST_POLICY,
                  **kwargs: Any) -> NovitaSeedreamProvider:
    http = make_http(session, "novita", {"Authorization": f"Bearer {fake.key}", "Accept": "application/json"},
                     fake.key, policy=policy)
    return NovitaSeedreamProvider(http, LIMITS, base_url=fake.base_url, **kwargs)


def make_glm(session: aiohttp.ClientSession, fake: FakeNovita) -> NovitaProvider:
    http = make_http(session, "novita", {"Authorization": f"Bearer {fake.key}"}, fake.key)
    return NovitaProvider(http, LIMITS, base_url=fake.base_url)


@pytest.fixture
def provider(session: aiohttp.ClientSession, fake: FakeNovita) -> NovitaSeedreamProvider:
    return make_provider(session, fake)


def sent(fake: FakeNovita, path: str = SEEDREAM) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in fake.calls("POST", path)]


async def call(provider: NovitaSeedreamProvider, request: ImagineRequest | EditRequest) -> Succeeded | Failed:
    await provider.validate(request)
    handle = await provider.submit(request)
    # The answer is stored as the job's handle; a restarted process reads the same thing back.
    status = await provider.poll(RemoteHandle.from_json(handle.to_json()))
    assert isinstance(status, Succeeded | Failed)
    return status


# --- the call ----------------------------------------------------------------------------------------------


async def test_imagine_is_one_call_whose_answer_carries_the_image(provider: NovitaSeedreamProvider,
                                                                  fake: FakeNovita) -> None:
    result = await call(provider, ImagineRequest(prompt="a lighthouse at dusk"))

    assert isinstance(result, Succeeded) and len(result.outputs) == 1
    image = await provider.fetch(result.outputs[0])
    assert image.data == fake.files[next(iter(fake.files))] and image.mime == "image/png"
    assert sent(fake) == [{"prompt": "a lighthouse at dusk", "size": "2048x2048", "watermark": False,
                           "sequential_image_generation": "disabled"}]
    (post,) = fake.calls("POST", SEEDREAM)
    assert post.headers["Authorization"] == f"Bearer {fake.key}"
    # Nothing to poll: the call was the only request before the download.
    assert [r.path for r in fake.requests if not r.path.startswith("/_files/")] == [SEEDREAM]


async def test_edit_sends_every_input_image_inline_and_asks_for_a_set(provider: NovitaSeedreamProvider,
                                                                      fake: FakeNovita) -> None:
    first, second = image_input(120, 90), image_input(64, 64)
    result = await call(provider, EditRequest(images=(first, second), prompt="make it winter", count=3))

    assert isinstance(result, Succeeded) and len(result.outputs) == 3
    (body,) = sent(fake)
    assert body["sequential_image_generation"] == "auto"
    assert body["sequential_image_generation_options"] == {"max_images": 3}
    assert [base64.b64decode(uri.split(",", 1)[1]) for uri in body["image"]] == [first.data, second.data]


async def test_fewer_images_than_asked_is_still_a_success_with_those(provider: NovitaSeedreamProvider,
                                                                     fake: FakeNovita) -> None:
    fake.seedream_counts = [2]
    result = await call(provider, ImagineRequest(prompt="four foxes", count=4))
    assert isinstance(result, Succeeded) and len(result.outputs) == 2
    assert sent(fake)[0]["sequential_image_generation_options"] == {"max_images": 4}


async def test_the_fakes_fewer_images_draw_repeats_from_run_to_run(session: aiohttp.ClientSession) -> None:
    counts = []
    for _ in range(2):
        server = FakeNovita(key="k")
        await server.start()
        try:
            provider = make_provider(session, server)
            run = [len(r.outputs) for r in [await call(provider, ImagineRequest(prompt="x", count=4))
                                            for _ in range(12)] if isinstance(r, Succeeded)]
        finally:
            await server.stop()
        counts.append(run)
    assert counts[0] == counts[1] and min(counts[0]) < 4 and max(counts[0]) == 4


async def test_watermark_only_when_the_operator_asks(session: aiohttp.ClientSession, fake: FakeNovita) -> None:
    await call(make_provider(session, fake, watermark=True), ImagineRequest(prompt="a fox"))
    assert sent(fake)[0]["watermark"] is True


async def test_a_call_that_times_out_after_sending_is_interrupted_and_not_sent_again(
        session: aiohttp.ClientSession, fake: FakeNovita) -> None:
    fake.call_s = 2.0
    provider = make_provider(session, fake, policy=HttpPolicy(timeout_s=0.3, max_attempts=4, backoff_base_s=0.01))
    with pytest.raises(SynchronousCallInterrupted, match="timed out after the request was sent"):
        await provider.submit(ImagineRequest(prompt="a fox"))
    assert len(fake.calls("POST", SEEDREAM)) == 1


async def test_a_placeholder_handle_reads_as_interrupted(provider: NovitaSeedreamProvider) -> None:
    status = await provider.poll(placeholder("novita", 7, "imagine"))
    assert isinstance(status, Failed) and status.code == "interrupted" and status.charged is None
    assert "not sent again" in status.reason


# --- sizes and unsupported parameters ----------------------------------------------------------------------


@pytest.mark.parametrize("preset", list(SizePreset))
async def test_each_preset_sends_a_valid_size_of_the_same_aspect(provider: NovitaSeedreamProvider,
                                                                 fake: FakeNovita, preset: SizePreset) -> None:
    result = await call(provider, ImagineRequest(prompt="a fox", size=Size(preset=preset)))
    assert isinstance(result, Succeeded)  # the strict fake answers 400 to a size outside the rules
    width, height = PRESET_SIZES[preset]
    assert sent(fake)[0]["size"] == f"{width}x{height}"
    expected = {"square": 1, "portrait_4_3": 3 / 4, "portrait_16_9": 9 / 16, "landscape_4_3": 4 / 3,
                "landscape_16_9": 16 / 9}
    assert width / height == pytest.approx(expected[preset.value.removesuffix("_hd")])


@pytest.mark.parametrize("text", ["1920x1920", "3225x3225", "8000x500", "2560x1440"])
async def test_valid_explicit_sizes_go_through_unchanged(provider: NovitaSeedreamProvider, fake: FakeNovita,
                                                         text: str) -> None:
    await call(provider, ImagineRequest(prompt="a fox", size=Size.parse(text)))
    assert sent(fake)[0]["size"] == text


@pytest.mark.parametrize("text", ["1024x1024", "1919x1920", "3300x3300", "9000x400"])
async def test_invalid_explicit_sizes_are_refused_with_the_valid_range_and_nothing_is_sent(
        provider: NovitaSeedreamProvider, fake: FakeNovita, text: str) -> None:
    request = ImagineRequest(prompt="a fox", size=Size.parse(text))
    for attempt in (provider.validate(request), provider.submit(request)):
        with pytest.raises(InputError) as err:
            await attempt
        assert text in str(err.value) and "3,686,400 to 10,404,496 pixels" in str(err.value)
        assert "1:16 and 16:1" in str(err.value)
    assert fake.requests == []


@pytest.mark.parametrize("request_", [
    ImagineRequest(prompt="a fox", seed=3),
    EditRequest(images=(image_input(),), prompt="x", steps=20),
    EditRequest(images=(image_input(),), prompt="x", output_format="png"),
])
async def test_parameters_seedream_does_not_take_are_refused_not_dropped(
        provider: NovitaSeedreamProvider, fake: FakeNovita, request_: ImagineRequest | EditRequest) -> None:
    with pytest.raises(InputError, match="cannot take"):
        await provider.validate(request_)
    assert fake.requests == []


# --- retired models ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [404, 410, 400])
async def test_a_retired_glm_endpoint_raises_model_retired_naming_the_replacement(
        session: aiohttp.ClientSession, fake: FakeNovita, status: int) -> None:
    fake.retire_glm(status)
    with pytest.raises(ModelRetiredError) as err:
        await make_glm(session, fake).submit(ImagineRequest(prompt="a fox"))
    assert err.value.model == "glm-image" and err.value.instead == "NOVITA_MODEL=seedream-5.0-lite"
    assert "glm-image is gone at novita" in str(err.value) and f"HTTP {status}" in str(err.value)


async def test_a_bare_404_from_a_vanished_route_is_a_retirement(provider: NovitaSeedreamProvider,
                                                                fake: FakeNovita) -> None:
    fake.fail_next(404, "404 page not found", path_contains=SEEDREAM)
    with pytest.raises(ModelRetiredError):
        await provider.submit(ImagineRequest(prompt="a fox"))


async def test_a_deprecated_reason_on_any_4xx_is_a_retirement(provider: NovitaSeedreamProvider,
                                                              fake: FakeNovita) -> None:
    fake.fail_next(400, {"code": 400, "reason": "MODEL_DEPRECATED", "message": "bad request", "metadata": {}})
    with pytest.raises(ModelRetiredError, match="reason MODEL_DEPRECATED"):
        await provider.submit(ImagineRequest(prompt="a fox"))


@pytest.mark.parametrize(("status", "body"), [
    (404, {"code": 404, "reason": "IMAGE_NOT_FOUND", "message": "image not found", "metadata": {}}),
    (400, {"code": 400, "reason": "INVALID_REQUEST_BODY", "message": "prompt is too long", "metadata": {}}),
])
async def test_a_4xx_about_the_input_is_not_a_retirement(provider: NovitaSeedreamProvider, fake: FakeNovita,
                                                         status: int, body: dict[str, Any]) -> None:
    fake.fail_next(status, body)
    with pytest.raises(ProviderRejectedError) as err:
        await provider.submit(EditRequest(images=(image_input(),), prompt="x"))
    assert not isinstance(err.value, ModelRetiredError)
    assert body["message"] in str(err.value) and err.value.status == status


async def test_the_free_probe_tells_a_live_endpoint_from_a_retired_one(
        session: aiohttp.ClientSession, fake: FakeNovita, provider: NovitaSeedreamProvider) -> None:
    live = await provider.check_model()
    assert live.alive is True and "HTTP 400" in live.message
    glm = make_glm(session, fake)
    assert (await glm.check_model()).alive is True
    fake.retire_glm(410)
    gone = await glm.check_model()
    assert gone.alive is False and "probably RETIRED MODEL" in gone.message
    assert "NOVITA_MODEL=seedream-5.0-lite" in gone.message
    assert fake.jobs == {}  # the probes created nothing
