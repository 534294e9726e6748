"""Odd but valid images through the real `atelier` command: phone photos (MPO), 16-bit PNGs, palette PNGs with
transparent areas; and a provider output with far too many pixels for its few bytes."""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from tests.fakes.fal import FakeFal
from tests.test_cli import atelier, clean_env


@pytest.fixture
async def fal() -> AsyncIterator[FakeFal]:
    server = FakeFal(key="formats-key")
    await server.start()
    yield server
    await server.stop()


def mpo_bytes() -> bytes:
    """A two-picture MPO as phones write it: red left, then a green second picture."""
    first, second = Image.new("RGB", (160, 120), (200, 30, 30)), Image.new("RGB", (160, 120), (30, 200, 30))
    buf = io.BytesIO()
    first.save(buf, "MPO", save_all=True, append_images=[second])
    return buf.getvalue()


def png_16bit_gradient() -> bytes:
    ramp = Image.linear_gradient("L").resize((256, 256))
    wide = ramp.convert("I").point(lambda v: v * 257).convert("I;16")  # 0..65535
    buf = io.BytesIO()
    wide.save(buf, "PNG")
    return buf.getvalue()


def palette_png_with_transparency() -> bytes:
    """Left half opaque blue, right half transparent (palette entry 0)."""
    img = Image.new("P", (128, 128), 0)
    img.putpalette([255, 255, 0, 0, 0, 255] + [0] * 762)
    img.paste(1, (0, 0, 64, 128))
    buf = io.BytesIO()
    img.save(buf, "PNG", transparency=0)
    return buf.getvalue()


def huge_png(width: int, height: int) -> bytes:
    """A valid grey PNG of width × height built row by row, so making it costs no memory: a few hundred KB."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    packer = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


async def run_filter(tmp_path: Path, image: bytes, name: str = "noir") -> Image.Image:
    source = tmp_path / "in.img"
    source.write_bytes(image)
    code, result, err = await atelier("job", "filter", "--image", str(source), "--name", name, "--provider",
                                      "local", "--out", str(tmp_path / "out"), cwd=tmp_path, env=clean_env())
    assert code == 0 and result is not None, (result, err)
    (path,) = result["files"]
    with Image.open(path) as out:
        out.load()
        return out


async def test_a_phone_photo_in_mpo_format_is_taken_as_its_first_picture(tmp_path: Path, fal: FakeFal) -> None:
    out = await run_filter(tmp_path, mpo_bytes(), "vivid")
    assert out.size == (160, 120)
    red, green, _ = out.convert("RGB").getpixel((80, 60))
    assert red > 150 and green < 80  # the first (red) picture, not the second
    # Sent to a provider it is a plain JPEG of the first picture.
    source = tmp_path / "in.img"
    code, result, _ = await atelier("job", "edit", "--image", str(source), "--prompt", "x", cwd=tmp_path,
                                    env=clean_env(FAL_KEY=fal.key, FAL_QUEUE_URL=fal.base_url))
    assert code == 0, result
    (submit,) = fal.calls("POST")
    (url,) = json.loads(submit.body)["image_urls"]
    assert url.startswith("data:image/jpeg;base64,")
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as sent:
        assert sent.size == (160, 120) and getattr(sent, "n_frames", 1) == 1


async def test_a_16_bit_png_through_noir_keeps_its_tones(tmp_path: Path) -> None:
    out = await run_filter(tmp_path, png_16bit_gradient())
    grey = out.convert("L")
    assert 100 < ImageStat.Stat(grey).mean[0] < 155, "a gradient must stay a gradient, not turn white"
    assert grey.getpixel((128, 5)) < 30 and grey.getpixel((128, 250)) > 225  # dark top, light bottom


async def test_transparent_areas_of_a_palette_png_stay_transparent(tmp_path: Path) -> None:
    for name in ("noir", "sepia", "pixelate"):
        out = await run_filter(tmp_path, palette_png_with_transparency(), name)
        rgba = out.convert("RGBA")
        assert rgba.getpixel((100, 64))[3] == 0, f"{name}: the transparent half became a solid colour"
        assert rgba.getpixel((20, 64))[3] == 255, f"{name}: the visible half must stay opaque"


async def test_an_88_megapixel_provider_output_is_refused_with_a_clear_error(tmp_path: Path, fal: FakeFal) -> None:
    fal.output_image = huge_png(9400, 9400)
    assert len(fal.output_image) < 400_000
    code, result, _ = await atelier("job", "imagine", "--prompt", "x", "--provider", "fal", cwd=tmp_path,
                                    env=clean_env(FAL_KEY=fal.key, FAL_QUEUE_URL=fal.base_url))
    assert code == 1 and result is not None and result["state"] == "failed"
    assert "9400x9400 (88.4 megapixels)" in result["error"] and "limit is 36 megapixels" in result["error"]
    assert result["files"] == []
