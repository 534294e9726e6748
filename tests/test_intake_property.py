"""Whatever bytes a member sends as an image, the answer is a clean refusal (an InputError saying what is wrong,
with nothing recorded or stored) or a correct job (recorded, its input kept as checked, finished by the local
filter with a real image). Real files, the real intake (`bot.inputs.read_image`), the real runner on a real
SQLite file; hypothesis chooses the bytes: noise, and real images of every format and mode, cut or corrupted."""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
import random
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from bot.app import App, open_app
from bot.errors import InputError
from bot.inputs import read_image
from bot.jobs import RunnerConfig
from bot.operations import FilterRequest
from bot.settings import Settings
from bot.store.models import JobState, Origin, Subject

FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "MPO", "BMP", "TIFF")
MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "I;16", "CMYK")
MIN_SIDE = 16


@st.composite
def real_images(draw: st.DrawFn) -> tuple[bytes, bool]:
    """An image as some program would save it, and whether Atelier must take it (a format it accepts, and
    large enough)."""
    fmt = draw(st.sampled_from(FORMATS))
    mode = draw(st.sampled_from(MODES))
    size = (draw(st.integers(1, 160)), draw(st.integers(1, 160)))
    seed = draw(st.integers(0, 255))
    # Deterministic noise (hypothesis replays examples): a picture that compresses like a photo, roughly.
    img = Image.frombytes("L", size, random.Random(seed).randbytes(size[0] * size[1]))
    try:
        img = img.convert(mode) if mode != "I;16" else img.convert("I").point(lambda v: v * 257).convert("I;16")
        buf = io.BytesIO()
        extra = {"save_all": True, "append_images": [img.copy()]} if fmt == "MPO" else {}
        kwargs = {"transparency": 0} if mode == "P" and fmt == "PNG" and seed % 2 else {}
        img.save(buf, fmt, **extra, **kwargs)
    except (OSError, ValueError, KeyError):
        # This format cannot hold this mode: send it as a PNG of the same picture.
        fmt, buf = "PNG", io.BytesIO()
        img.convert("RGB").save(buf, "PNG")
    return buf.getvalue(), fmt not in ("BMP", "TIFF") and min(size) >= MIN_SIDE


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(real_images())[0])
    how = draw(st.sampled_from(("cut", "flip", "junk-prefix", "as-is")))
    if how == "cut":
        del data[draw(st.integers(0, max(0, len(data) - 1))):]
    elif how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
    elif how == "junk-prefix":
        data[:0] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


# (bytes, must be accepted): noise and damaged files may go either way; an intact image of an accepted format
# and size must become a job.
ANY_BYTES = st.one_of(st.binary(max_size=512).map(lambda b: (b, False)), real_images(),
                      damaged().map(lambda b: (b, False)))


def blob_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[asyncio.AbstractEventLoop, App, Path]]:
    for var in ("GLAM_API_KEY", "FAL_KEY", "PIXAZO_API_KEY", "NOVITA_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    loop = asyncio.new_event_loop()
    stack = AsyncExitStack()
    app_settings = Settings(_env_file=None, database_url=f"sqlite:///{tmp_path}/data/atelier.db",  # type: ignore[call-arg]
                            quota_daily=100_000, quota_concurrent=1_000, min_input_side=MIN_SIDE)
    app = loop.run_until_complete(stack.enter_async_context(open_app(
        app_settings, deliverers={}, config=RunnerConfig(adopt=False))))
    try:
        yield loop, app, tmp_path
    finally:
        loop.run_until_complete(stack.aclose())
        loop.close()


def test_any_bytes_are_a_clean_refusal_or_a_correct_job(world: tuple[asyncio.AbstractEventLoop, App, Path]) -> None:
    loop, app, root = world
    counter = itertools.count()
    subject = Subject.cli("fuzz")

    async def one(data: bytes, must_accept: bool) -> None:
        path = root / f"in-{next(counter)}.bin"
        path.write_bytes(data)
        jobs_before = len(await app.store.list_jobs(None, limit=100_000))
        blobs_before = blob_files(app.blobs.root)
        async with aiohttp.ClientSession() as session:
            try:
                image = await read_image(str(path), limits=app.settings.image_limits, session=session)
            except InputError as exc:
                assert not must_accept, f"an intact image was refused: {exc}"
                message = str(exc)
                assert message.startswith("The image") and message.endswith(".") and len(message) < 300
                assert len(await app.store.list_jobs(None, limit=100_000)) == jobs_before
                assert blob_files(app.blobs.root) == blobs_before
                return
        # Accepted: the checked bytes decode to what intake said, and the job runs to a real result.
        with Image.open(io.BytesIO(image.data)) as img:
            assert img.size == (image.width, image.height)
            assert {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif",
                    "WEBP": "image/webp"}[img.format or ""] == image.mime
        assert image.sha256 == hashlib.sha256(image.data).hexdigest()
        job = await app.runner.create(subject, Origin.CLI, FilterRequest(image=image, name="noir"), provider="local")
        await asyncio.wait_for(app.runner.wait(job.id), 30)
        done = await app.store.get_job(job.id)
        assert done is not None and done.state is JobState.SUCCEEDED, (done.state if done else None,
                                                                       done.error_message if done else None)
        (output,) = done.outputs
        with Image.open(io.BytesIO(await app.blobs.get(output.sha256))) as out, \
                Image.open(io.BytesIO(image.data)) as src:
            assert out.size == (image.width, image.height)
            if src.mode in ("RGBA", "LA", "PA") or "transparency" in src.info:
                # Transparent areas stay where they were.
                assert out.convert("RGBA").getchannel("A").tobytes() == src.convert("RGBA").getchannel("A").tobytes()

    @settings(max_examples=150, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(ANY_BYTES)
    def check(case: tuple[bytes, bool]) -> None:
        loop.run_until_complete(one(*case))

    check()
