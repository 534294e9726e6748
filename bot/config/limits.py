"""Atelier's own limits on images in and out, applied where a provider's are unknown."""

from __future__ import annotations

from pydantic import Field

from bot.config.area import Area
from bot.images import ImageLimits


class ImageLimitSettings(Area):
    max_input_mb: float = Field(default=20.0, gt=0)
    max_input_megapixels: float = Field(default=36.0, gt=0)
    min_input_side: int = Field(default=64, ge=1)
    max_prompt_chars: int = Field(default=1000, ge=1)
    max_output_mb: float = Field(default=50.0, gt=0)
    # Output images on loopback, private or link-local addresses are refused unless this is true (local test
    # servers need it); outputs on the provider's own configured host are always allowed.
    allow_private_output_urls: bool = False
    # Provider outputs are decoded to check them: more pixels than this are refused from the header.
    max_output_megapixels: float = Field(default=36.0, gt=0)

    @property
    def image_limits(self) -> ImageLimits:
        return ImageLimits(
            max_bytes=int(self.max_input_mb * 1024 * 1024),
            max_megapixels=self.max_input_megapixels,
            min_side=self.min_input_side,
        )

    @property
    def max_output_bytes(self) -> int:
        return int(self.max_output_mb * 1024 * 1024)
