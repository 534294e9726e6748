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

from bot.images import full_decode
from bot.operations import FilterRequest, Operation, Request
from bot.providers.base import FilterInfo, KeyCheck, Provider, ProviderLimits
from bot.providers.http import ProviderHttp
from bot.providers.status import Failed, JobStatus, OutputImage, RemoteHandle, Succeeded

MAX_RESULTS_KEPT = 256


Mask = Image.Image | None  # where the image is visible (its alpha), so that hidden pixels do not skew contrast


def _noir(img: Image.Image, mask: Mask) -> Image.Image:
    grey = ImageOps.grayscale(img)
    # Grey stays grey: a third of the memory of RGB, and the same image.
    return ImageOps.autocontrast(grey, cutoff=2, mask=mask)


def _sepia(img: Image.Image, mask: Mask) -> Image.Image:
    grey = ImageOps.grayscale(img)
    return ImageOps.colorize(grey, black=(40, 26, 13), white=(255, 240, 205), mid=(165, 125, 80))


def _vivid(img: Image.Image, mask: Mask) -> Image.Image:
    img = ImageEnhance.Color(img).enhance(1.6)
    return ImageEnhance.Contrast(img).enhance(1.15)


def _sketch(img: Image.Image, mask: Mask) -> Image.Image:
    grey = ImageOps.grayscale(img)
    edges = grey.filter(ImageFilter.FIND_EDGES)
    return ImageOps.invert(ImageOps.autocontrast(edges, mask=mask)).convert("RGB")


def _pixelate(img: Image.Image, mask: Mask) -> Image.Image:
    block = max(4, min(img.size) // 48)
    small = img.resize((max(1, img.width // block), max(1, img.height // block)), Image.Resampling.BILINEAR)
    return small.resize(img.size, Image.Resampling.NEAREST)


def _posterize(img: Image.Image, mask: Mask) -> Image.Image:
    return ImageOps.posterize(img, 3)


FILTERS: dict[str, tuple[str, Callable[[Image.Image, Mask], Image.Image]]] = {
    "noir": ("black and white with deep contrast", _noir),
    "sepia": ("warm brown tones of an old print", _sepia),
    "vivid": ("stronger colour and contrast", _vivid),
    "sketch": ("pencil-like outlines", _sketch),
    "pixelate": ("large square pixels", _pixelate),
    "posterize": ("flat bands of colour", _posterize),
}
# Modes of more than 8 bits per channel (16-bit PNGs open as these): scaled to 8 bits, not clipped to white.
WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info


def _to_rgb(img: Image.Image) -> tuple[Image.Image, Mask]:
    """The picture as 8-bit RGB and, if it has transparent areas, its alpha channel to put back afterwards."""
    if img.mode in WIDE_MODES:
        img = img.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if _has_alpha(img):
        rgba = img.convert("RGBA")
        alpha = rgba.getchannel("A")
        return rgba.convert("RGB"), alpha
    return (img if img.mode == "RGB" else img.convert("RGB")), None


def apply_filter(data: bytes, name: str) -> bytes:
    """Blocking: run in a thread. Holds a full-size decode slot while the pixels are in memory."""
    with full_decode(), Image.open(io.BytesIO(data)) as src:
        src.load()
        ImageOps.exif_transpose(src, in_place=True)
        img, alpha = _to_rgb(src)
        out = FILTERS[name][1](img, alpha)
        del img
        if alpha is not None:  # transparent stays transparent
            out = out.convert("LA" if out.mode == "L" else "RGBA")
            out.putalpha(alpha)
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
