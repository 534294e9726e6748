"""Shared fixtures: a real aiohttp session, fast retry policies, and small real images."""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator

import aiohttp
import pytest
from hypothesis import settings as hypothesis_settings
from PIL import Image

from bot.images import ImageLimits, load_image
from bot.operations import ImageInput
from bot.providers.base import ProviderLimits
from bot.providers.http import HttpPolicy, ProviderHttp

# CI draws the same examples on every run, so what passed before a submission passes in its CI; a developer's run
# draws new ones each time, which is where new counter-examples are found.
hypothesis_settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

# Retries in tests wait milliseconds, not seconds; the schedule's shape is the same.
# The fakes serve outputs on 127.0.0.1, which a real policy refuses unless told (ALLOW_PRIVATE_OUTPUT_URLS).
FAST_POLICY = HttpPolicy(timeout_s=5.0, download_timeout_s=5.0, max_attempts=4, backoff_base_s=0.01,
                         backoff_max_s=0.05, max_retry_after_s=5.0, allow_private_outputs=True)
LIMITS = ProviderLimits(image=ImageLimits(), max_prompt_chars=1000, max_output_bytes=5 * 1024 * 1024,
                        max_parallel=2)


def png_bytes(width: int = 128, height: int = 128, color: tuple[int, int, int] = (10, 120, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes(width: int = 128, height: int = 128) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (240, 200, 10)).save(buf, "JPEG")
    return buf.getvalue()


def image_input(width: int = 128, height: int = 128, name: str = "photo.png") -> ImageInput:
    return load_image(png_bytes(width, height), filename=name, limits=ImageLimits())


def make_http(session: aiohttp.ClientSession, provider: str, headers: dict[str, str], secret: str = "",
              policy: HttpPolicy = FAST_POLICY) -> ProviderHttp:
    return ProviderHttp(session, provider, headers=headers, secrets=[secret] if secret else [], policy=policy)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def photo() -> ImageInput:
    return image_input()
