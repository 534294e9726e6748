"""Reading input images from a local path or an http(s) URL, with the same limits everywhere."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlparse

import aiohttp

from bot.errors import InputError
from bot.images import ImageLimits, load_image
from bot.operations import ImageInput

DOWNLOAD_TIMEOUT_S = 60.0


async def read_image(source: str, *, limits: ImageLimits, session: aiohttp.ClientSession,
                     label: str = "image") -> ImageInput:
    """Load and check one input image; every failure is an InputError naming the source."""
    if source.startswith(("http://", "https://")):
        data = await _download(source, limits=limits, session=session, label=label)
        name = urlparse(source).path.rsplit("/", 1)[-1] or "image"
    else:
        path = Path(source)
        data = await asyncio.to_thread(_read_file, path, source, limits, label)
        name = path.name
    return await asyncio.to_thread(load_image, data, filename=name, limits=limits, label=f"{label} {name!r}")


async def _download(url: str, *, limits: ImageLimits, session: aiohttp.ClientSession, label: str) -> bytes:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT_S)) as resp:
            if resp.status >= 400:
                raise InputError(f"The {label} at {url[:200]} could not be downloaded (HTTP {resp.status}).")
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > limits.max_bytes:
                    raise InputError(f"The {label} at {url[:200]} is larger than "
                                     f"{limits.max_bytes / 1_048_576:.0f} MB.")
                chunks.append(chunk)
            return b"".join(chunks)
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise InputError(f"The {label} at {url[:200]} could not be downloaded ({type(exc).__name__}).") from exc


def _read_file(path: Path, source: str, limits: ImageLimits, label: str) -> bytes:
    path = path.expanduser()
    if not path.is_file():
        raise InputError(f"The {label} {source!r} does not exist or is not a file.")
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise InputError(f"The {label} {source!r} is {size / 1_048_576:.1f} MB; "
                         f"the limit is {limits.max_bytes / 1_048_576:.0f} MB.")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"The {label} {source!r} cannot be read: {exc.strerror}.") from exc
