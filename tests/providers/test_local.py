"""The offline local filters do real work on real pixels."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from bot.errors import InputError
from bot.images import ImageLimits, load_image
from bot.operations import FilterRequest, ImageInput
from bot.providers.local import FILTERS, LocalProvider
from bot.providers.polling import PollSchedule, wait_for_result
from bot.providers.status import Failed, Succeeded
from tests.conftest import LIMITS, image_input


def gradient(width: int, height: int) -> ImageInput:
    img = Image.new("RGB", (width, height))
    img.putdata([(x * 255 // width, y * 255 // height, (x * y) % 256) for y in range(height) for x in range(width)])
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return load_image(buf.getvalue(), limits=ImageLimits())


@pytest.mark.parametrize("name", sorted(FILTERS))
async def test_each_filter_changes_the_image_and_keeps_its_size(name: str) -> None:
    provider = LocalProvider(None, LIMITS)
    src = gradient(160, 120)
    request = FilterRequest(image=src, name=name)
    await provider.validate(request)
    handle = await provider.submit(request)
    result = await wait_for_result(provider, handle, deadline=time.monotonic() + 5,
                                   schedule=PollSchedule(min_s=0.001))
    assert isinstance(result, Succeeded)
    fetched = await provider.fetch(result.outputs[0])
    out = Image.open(io.BytesIO(fetched.data))
    assert out.size == (160, 120)
    assert fetched.data != src.data


async def test_noir_is_grey() -> None:
    provider = LocalProvider(None, LIMITS)
    handle = await provider.submit(FilterRequest(image=image_input(), name="noir"))
    status = await provider.poll(handle)
    assert isinstance(status, Succeeded)
    data = status.outputs[0].data
    assert data is not None
    r, g, b = Image.open(io.BytesIO(data)).convert("RGB").getpixel((5, 5))  # type: ignore[misc]
    assert r == g == b


async def test_unknown_filter_is_refused_with_the_choices(photo: ImageInput) -> None:
    with pytest.raises(InputError, match=r"Unknown filter .glitter..*noir"):
        await LocalProvider(None, LIMITS).validate(FilterRequest(image=photo, name="glitter"))


async def test_a_result_lost_in_a_restart_is_a_free_retryable_failure(photo: ImageInput) -> None:
    old = LocalProvider(None, LIMITS)
    handle = await old.submit(FilterRequest(image=photo, name="sepia"))
    status = await LocalProvider(None, LIMITS).poll(handle)
    assert isinstance(status, Failed) and status.retryable and status.charged is False
