"""Decoding and checking images. The decoded content decides, never a file name or a declared type.

Memory: a decoded image costs width × height × 3-4 bytes (a 36 MP photo about 110-145 MB) however small its file,
so every check reads the header first (pixel limits cost nothing), JPEGs are verified by decoding at an eighth of
their size (the whole compressed stream is still read, so a truncated file is still caught), and full-size
decodes anywhere in the process take one of `MAX_FULL_DECODES` slots (`full_decode()`).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError, _imaging

from bot.errors import InputError
from bot.i18n import N_
from bot.operations import ImageInput

# Formats every provider and Discord accept. Anything else is refused before upload. MPO (what phones save: a
# JPEG followed by more JPEGs) is taken as its first frame, which is a plain JPEG.
ACCEPTED_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif",
                    "MPO": "image/jpeg"}
JPEG_FAMILY = ("JPEG", "MPO")
# Full-size decodes at once across the process (intake checks, local filters, output checks): with eight
# members sending 36 MP images at once, memory stays at two such images, not eight.
MAX_FULL_DECODES = 2
_decodes = threading.BoundedSemaphore(MAX_FULL_DECODES)
# Pillow stores big images as a chain of blocks of at most 16 MB by default. glibc serves blocks of that size from
# its per-thread heaps once its dynamic mmap threshold has grown (it does after the first big free), and keeps
# them after they are freed: with decodes in several worker threads the process then holds gigabytes it no longer
# uses. Blocks of up to 256 MB are each mapped on their own and handed back to the system when an image is freed.
# An operator's own PILLOW_BLOCK_SIZE wins.
PILLOW_BLOCK_BYTES = 256 * 1024 * 1024
if "PILLOW_BLOCK_SIZE" not in os.environ:
    _imaging.set_block_size(PILLOW_BLOCK_BYTES)


class TooManyPixelsError(InputError):
    """The image has more pixels than allowed (read from its header, nothing was decoded)."""


@dataclass(frozen=True, slots=True)
class ImageLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_megapixels: float = 36.0
    min_side: int = 64


@dataclass(frozen=True, slots=True)
class CheckedImage:
    """A decodable image: its bytes as they should be sent on (an MPO's first frame), type and size."""

    data: bytes
    mime: str
    width: int
    height: int


@contextmanager
def full_decode() -> Iterator[None]:
    """Hold one of the process's full-size decode slots. Blocking: only in worker threads."""
    with _decodes:
        yield


def _human_bytes(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n} bytes"


def check_image(data: bytes, *, label: str = "image", max_megapixels: float | None = None) -> CheckedImage:
    """Decode enough to be sure the image is readable; raise InputError otherwise. Blocking: run in a thread."""
    if not data:
        raise InputError(N_("The {label} is empty (0 bytes)."), label=label)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt = img.format or ""
                width, height = img.size
                if fmt not in ACCEPTED_FORMATS:
                    raise InputError(N_("The {label} is a {format} image; use PNG, JPEG, WEBP or GIF."), label=label,
                                     format=fmt or "unknown")
                megapixels = width * height / 1_000_000
                if max_megapixels is not None and megapixels > max_megapixels:
                    raise TooManyPixelsError(
                        N_("The {label} is {width}x{height} ({megapixels} megapixels); the limit is {limit} "
                           "megapixels."), label=label, width=width, height=height,
                        megapixels=f"{megapixels:.1f}", limit=f"{max_megapixels:g}")
                if fmt == "MPO":
                    data = _first_frame(data, img)
                _verify_pixels(img, fmt)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(N_("The {label} has far too many pixels to process."), label=label) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(N_("The {label} is not an image that can be read (PNG, JPEG, WEBP or GIF)."),
                         label=label) from exc
    return CheckedImage(data=data, mime=ACCEPTED_FORMATS[fmt], width=width, height=height)


def _verify_pixels(img: Image.Image, fmt: str) -> None:
    """Decode the pixels (catches truncated or corrupt files) at the smallest cost that proves the same."""
    if fmt in JPEG_FAMILY:
        # libjpeg scales while decoding: all the compressed data is read, an eighth of the pixels kept.
        img.draft(img.mode, (math.ceil(img.width / 8), math.ceil(img.height / 8)))
        img.load()
        return
    with full_decode():
        img.load()


def _first_frame(data: bytes, img: Image.Image) -> bytes:
    """An MPO's first image: the leading bytes its MP index says (a complete JPEG of its own)."""
    entries = getattr(img, "mpinfo", {}).get(0xB002) or []
    size = entries[0].get("Size") if entries and isinstance(entries[0], dict) else None
    if isinstance(size, int) and 0 < size <= len(data):
        first = _without_mp_index(data[:size])
        try:
            with Image.open(io.BytesIO(first)) as frame:
                if frame.format == "JPEG" and frame.size == img.size:
                    return first
        except (UnidentifiedImageError, OSError, ValueError):
            pass
    raise InputError("The image is a multi-picture JPEG whose first picture cannot be read.")


def _without_mp_index(jpeg: bytes) -> bytes:
    """The JPEG without its APP2 "MPF" segment: that index names pictures that are no longer there."""
    out, pos = [jpeg[:2]], 2
    while pos + 4 <= len(jpeg) and jpeg[pos] == 0xFF and jpeg[pos + 1] not in (0xDA, 0xD9):
        length = int.from_bytes(jpeg[pos + 2:pos + 4], "big")
        segment = jpeg[pos:pos + 2 + length]
        if not (jpeg[pos + 1] == 0xE2 and segment[4:8] == b"MPF\x00"):
            out.append(segment)
        pos += 2 + length
    out.append(jpeg[pos:])
    return b"".join(out)


def load_image(data: bytes, *, filename: str = "image", limits: ImageLimits, label: str = "image") -> ImageInput:
    """Check an input image against Atelier's limits. Blocking: run in a thread for large inputs."""
    if len(data) > limits.max_bytes:
        raise InputError(N_("The {label} is {size}; the limit is {limit}."), label=label,
                         size=_human_bytes(len(data)), limit=_human_bytes(limits.max_bytes))
    checked = check_image(data, label=label, max_megapixels=limits.max_megapixels)
    width, height = checked.width, checked.height
    if min(width, height) < limits.min_side:
        raise InputError(N_("The {label} is {width}x{height}; its shortest side must be at least {side} px."),
                         label=label, width=width, height=height, side=limits.min_side)
    return ImageInput(
        data=checked.data, mime=checked.mime, width=width, height=height, filename=filename,
        sha256=hashlib.sha256(checked.data).hexdigest(),
    )


def extension_for(mime: str) -> str:
    return {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/gif": "gif"}.get(mime, "bin")
