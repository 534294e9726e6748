"""Requests to and from the JSON stored with a job. Images are stored as blob references, not bytes."""

from __future__ import annotations

from typing import Any, assert_never

from bot.blobs import Blobs
from bot.operations import (
    EditRequest,
    FilterRequest,
    ImageInput,
    ImagineRequest,
    Operation,
    Request,
    Size,
    TryonRequest,
)


def _image_ref(image: ImageInput) -> dict[str, Any]:
    return {"sha256": image.sha256, "mime": image.mime, "width": image.width, "height": image.height,
            "filename": image.filename}


async def _image(ref: dict[str, Any], blobs: Blobs) -> ImageInput:
    return ImageInput(data=await blobs.get(ref["sha256"]), mime=ref["mime"], width=ref["width"],
                      height=ref["height"], filename=ref["filename"], sha256=ref["sha256"])


def images_of(request: Request) -> list[ImageInput]:
    match request:
        case TryonRequest():
            return [request.person, request.garment]
        case FilterRequest():
            return [request.image]
        case EditRequest():
            return list(request.images)
        case ImagineRequest():
            return []
        case _:
            assert_never(request)


def encode(request: Request) -> dict[str, Any]:
    if isinstance(request, TryonRequest):
        return {"operation": "tryon", "person": _image_ref(request.person), "garment": _image_ref(request.garment),
                "mask": request.mask}
    if isinstance(request, FilterRequest):
        return {"operation": "filter", "image": _image_ref(request.image), "name": request.name}
    size = str(request.size) if request.size else None
    common = {"prompt": request.prompt, "size": size, "seed": request.seed, "count": request.count}
    if isinstance(request, EditRequest):
        return {"operation": "edit", "images": [_image_ref(i) for i in request.images], **common,
                "steps": request.steps, "guidance": request.guidance, "output_format": request.output_format}
    return {"operation": "imagine", **common}


async def decode(data: dict[str, Any], blobs: Blobs) -> Request:
    op = Operation(data["operation"])
    size = Size.parse(data["size"]) if data.get("size") else None
    match op:
        case Operation.TRYON:
            return TryonRequest(person=await _image(data["person"], blobs),
                                garment=await _image(data["garment"], blobs), mask=data["mask"])
        case Operation.FILTER:
            return FilterRequest(image=await _image(data["image"], blobs), name=data["name"])
        case Operation.EDIT:
            images = tuple([await _image(ref, blobs) for ref in data["images"]])
            return EditRequest(images=images, prompt=data["prompt"], size=size, seed=data.get("seed"),
                               count=data.get("count", 1), steps=data.get("steps"), guidance=data.get("guidance"),
                               output_format=data.get("output_format"))
        case Operation.IMAGINE:
            return ImagineRequest(prompt=data["prompt"], size=size, seed=data.get("seed"),
                                  count=data.get("count", 1))
        case _:
            assert_never(op)


def takes_seed(operation: str) -> bool:
    """Vary is offered only where the operation takes a seed."""
    return operation in (Operation.EDIT.value, Operation.IMAGINE.value)
