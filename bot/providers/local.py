"""An offline filter provider on Pillow: real work with no key and no network. The embedded default.

It keeps no remote state: a job's result lives in this process until fetched. A handle that outlives the
process (a restart) is answered as failed-and-retryable; re-running a local filter is free and deterministic.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Callable
from typing import ClassVar

from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from bot.operations import FilterRequest, Operation, Request
from bot.providers.base import FilterInfo, KeyCheck, Provider, ProviderLimits
from bot.providers.http import ProviderHttp
from bot.providers.status import Failed, JobStatus, OutputImage, RemoteHandle, Succeeded

MAX_RESULTS_KEPT = 256


def _noir(img: Image.Image) -> Image.Image:
    grey = ImageOps.grayscale(img)
    return ImageOps.autocontrast(grey, cutoff=2).convert("RGB")


def _sepia(img: Image.Image) -> Image.Image:
    grey = ImageOps.grayscale(img)
    return ImageOps.colorize(grey, black=(40, 26, 13), white=(255, 240, 205), mid=(165, 125, 80))


def _vivid(img: Image.Image) -> Image.Image:
    img = ImageEnhance.Color(img).enhance(1.6)
    return ImageEnhance.Contrast(img).enhance(1.15)


def _sketch(img: Image.Image) -> Image.Image:
    grey = ImageOps.grayscale(img)
    edges = grey.filter(ImageFilter.FIND_EDGES)
    return ImageOps.invert(ImageOps.autocontrast(edges)).convert("RGB")


def _pixelate(img: Image.Image) -> Image.Image:
    block = max(4, min(img.size) // 48)
    small = img.resize((max(1, img.width // block), max(1, img.height // block)), Image.Resampling.BILINEAR)
    return small.resize(img.size, Image.Resampling.NEAREST)


def _posterize(img: Image.Image) -> Image.Image:
    return ImageOps.posterize(img, 3)


FILTERS: dict[str, tuple[str, Callable[[Image.Image], Image.Image]]] = {
    "noir": ("black and white with deep contrast", _noir),
    "sepia": ("warm brown tones of an old print", _sepia),
    "vivid": ("stronger colour and contrast", _vivid),
    "sketch": ("pencil-like outlines", _sketch),
    "pixelate": ("large square pixels", _pixelate),
    "posterize": ("flat bands of colour", _posterize),
}


def apply_filter(data: bytes, name: str) -> bytes:
    """Blocking: run in a thread."""
    with Image.open(io.BytesIO(data)) as src:
        img = ImageOps.exif_transpose(src).convert("RGB")
    out = FILTERS[name][1](img)
    buf = io.BytesIO()
    out.save(buf, "PNG", optimize=False)
    return buf.getvalue()


class LocalProvider(Provider):
    name = "local"
    operations: ClassVar[frozenset[Operation]] = frozenset({Operation.FILTER})
    typical_duration_s = 0.05
    free_to_resubmit = True

    def __init__(self, http: ProviderHttp | None, limits: ProviderLimits) -> None:
        super().__init__(http, limits)
        self._results: dict[str, bytes] = {}

    async def list_filters(self) -> list[FilterInfo]:
        return [FilterInfo(name=n, provider=self.name, description=d) for n, (d, _) in FILTERS.items()]

    async def submit(self, request: Request) -> RemoteHandle:
        assert isinstance(request, FilterRequest)
        result = await asyncio.to_thread(apply_filter, request.image.data, request.name)
        remote_id = uuid.uuid4().hex
        if len(self._results) >= MAX_RESULTS_KEPT:
            self._results.pop(next(iter(self._results)))
        self._results[remote_id] = result
        return RemoteHandle(provider=self.name, remote_id=remote_id, operation=request.operation.value)

    async def poll(self, handle: RemoteHandle) -> JobStatus:
        data = self._results.get(handle.remote_id)
        if data is None:
            return Failed(reason="the local result was lost in a restart", retryable=True, charged=False,
                          code="interrupted")
        return Succeeded(outputs=(OutputImage(data=data, mime="image/png"),))

    def forget(self, handle: RemoteHandle) -> None:
        self._results.pop(handle.remote_id, None)

    async def check_key(self) -> KeyCheck:
        return KeyCheck(True, "needs no key: runs on this machine")
