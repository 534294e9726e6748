"""Decoding and checking images. The decoded content decides, never a file name or a declared type."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from bot.errors import InputError
from bot.operations import ImageInput

# Formats every provider and Discord accept. Anything else is refused before upload.
ACCEPTED_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}


@dataclass(frozen=True, slots=True)
class ImageLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_megapixels: float = 36.0
    min_side: int = 64


def _human_bytes(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n} bytes"


def inspect_image(
    data: bytes, *, label: str = "image", max_megapixels: float | None = None
) -> tuple[str, int, int]:
    """Decode fully; return (mime, width, height) or raise InputError. Blocking: run in a thread.

    The pixel limit is checked from the header, before the pixels are decoded, so a huge image costs no memory.
    """
    if not data:
        raise InputError(f"The {label} is empty (0 bytes).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt = img.format or ""
                width, height = img.size
                if fmt not in ACCEPTED_FORMATS:
                    raise InputError(
                        f"The {label} is a {fmt or 'unknown'} image; use PNG, JPEG, WEBP or GIF."
                    )
                megapixels = width * height / 1_000_000
                if max_megapixels is not None and megapixels > max_megapixels:
                    raise InputError(
                        f"The {label} is {width}x{height} ({megapixels:.1f} megapixels); "
                        f"the limit is {max_megapixels:g} megapixels."
                    )
                img.load()  # decodes the pixels: catches truncated or corrupt files
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"The {label} has far too many pixels to process.") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"The {label} is not an image that can be read (PNG, JPEG, WEBP or GIF).") from exc
    return ACCEPTED_FORMATS[fmt], width, height


def load_image(data: bytes, *, filename: str = "image", limits: ImageLimits, label: str = "image") -> ImageInput:
    """Check an input image against Atelier's limits. Blocking: run in a thread for large inputs."""
    if len(data) > limits.max_bytes:
        raise InputError(
            f"The {label} is {_human_bytes(len(data))}; the limit is {_human_bytes(limits.max_bytes)}."
        )
    mime, width, height = inspect_image(data, label=label, max_megapixels=limits.max_megapixels)
    if min(width, height) < limits.min_side:
        raise InputError(
            f"The {label} is {width}x{height}; its shortest side must be at least {limits.min_side} px."
        )
    return ImageInput(
        data=data, mime=mime, width=width, height=height, filename=filename,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def extension_for(mime: str) -> str:
    return {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/gif": "gif"}.get(mime, "bin")
