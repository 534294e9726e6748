"""Input images are judged by decoding them, never by name or declared type."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bot.errors import InputError
from bot.images import ImageLimits, load_image
from tests.conftest import jpeg_bytes, png_bytes

LIMITS = ImageLimits(max_bytes=2_000_000, max_megapixels=4.0, min_side=64)


def test_png_and_jpeg_are_accepted_with_their_real_type() -> None:
    image = load_image(jpeg_bytes(200, 100), filename="photo.png", limits=LIMITS)
    assert (image.mime, image.width, image.height) == ("image/jpeg", 200, 100)
    assert len(image.sha256) == 64


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty"),
    (b"hello, I am a text file pretending to be a png", "not an image"),
    (png_bytes(300, 300)[:200], "not an image"),
    (png_bytes(32, 500), "shortest side must be at least 64"),
])
def test_bad_inputs_are_refused_with_a_clear_reason(data: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_image(data, filename="x.png", limits=LIMITS)


def test_too_many_megapixels_is_refused_before_decoding() -> None:
    # 3000x2000 = 6 MP against a 4 MP limit; the header alone decides.
    buf = io.BytesIO()
    Image.new("L", (3000, 2000)).save(buf, "PNG")
    with pytest.raises(InputError, match=r"6\.0 megapixels"):
        load_image(buf.getvalue(), limits=LIMITS)


def test_too_many_bytes_is_refused() -> None:
    with pytest.raises(InputError, match="limit is"):
        load_image(b"\0" * 2_000_001, limits=LIMITS)


def test_other_image_formats_are_named() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (100, 100)).save(buf, "BMP")
    with pytest.raises(InputError, match="BMP"):
        load_image(buf.getvalue(), limits=LIMITS)
