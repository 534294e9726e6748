"""The operations Atelier offers and the values their requests are made of."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from bot.errors import InputError


class Operation(StrEnum):
    TRYON = "tryon"
    FILTER = "filter"
    EDIT = "edit"
    IMAGINE = "imagine"


Mask = Literal["overall", "upper", "lower"]
MASKS: tuple[Mask, ...] = ("overall", "upper", "lower")
OutputFormat = Literal["jpeg", "png"]


class SizePreset(StrEnum):
    SQUARE_HD = "square_hd"
    SQUARE = "square"
    PORTRAIT_4_3 = "portrait_4_3"
    PORTRAIT_16_9 = "portrait_16_9"
    LANDSCAPE_4_3 = "landscape_4_3"
    LANDSCAPE_16_9 = "landscape_16_9"


_WXH = re.compile(r"^\s*(\d{2,5})\s*[xX×]\s*(\d{2,5})\s*$")


@dataclass(frozen=True, slots=True)
class Size:
    """Either a named preset or an explicit width x height."""

    preset: SizePreset | None = None
    width: int | None = None
    height: int | None = None

    @classmethod
    def parse(cls, text: str) -> Size:
        text = text.strip()
        try:
            return cls(preset=SizePreset(text.lower()))
        except ValueError:
            pass
        match = _WXH.match(text)
        if not match:
            presets = ", ".join(p.value for p in SizePreset)
            raise InputError(f"Unknown size {text[:40]!r}: use one of {presets}, or WIDTHxHEIGHT such as 1024x768.")
        return cls(width=int(match[1]), height=int(match[2]))

    def __str__(self) -> str:
        if self.preset is not None:
            return self.preset.value
        return f"{self.width}x{self.height}"


@dataclass(frozen=True, slots=True)
class ImageInput:
    """An input image that has been read and decoded once (see bot.images)."""

    data: bytes = field(repr=False)
    mime: str
    width: int
    height: int
    filename: str = "image"
    sha256: str = ""

    def data_uri(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


@dataclass(frozen=True, slots=True)
class TryonRequest:
    person: ImageInput
    garment: ImageInput
    mask: Mask = "overall"
    operation: Literal[Operation.TRYON] = Operation.TRYON


@dataclass(frozen=True, slots=True)
class FilterRequest:
    image: ImageInput
    name: str
    operation: Literal[Operation.FILTER] = Operation.FILTER


@dataclass(frozen=True, slots=True)
class EditRequest:
    images: tuple[ImageInput, ...]
    prompt: str
    size: Size | None = None
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    count: int = 1
    output_format: OutputFormat | None = None
    operation: Literal[Operation.EDIT] = Operation.EDIT


@dataclass(frozen=True, slots=True)
class ImagineRequest:
    prompt: str
    size: Size | None = None
    seed: int | None = None
    count: int = 1
    operation: Literal[Operation.IMAGINE] = Operation.IMAGINE


Request = TryonRequest | FilterRequest | EditRequest | ImagineRequest


def image_count(request: Request) -> int:
    """How many images a request asks for: what the quota charges."""
    if isinstance(request, EditRequest | ImagineRequest):
        return request.count
    return 1
