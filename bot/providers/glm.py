"""GLM Image's input schema, shared by the hosts that take it as fal documents it (fal and Pixazo)."""

from __future__ import annotations

from typing import Any

from bot.errors import InputError
from bot.operations import EditRequest, ImagineRequest, Request, Size
from bot.providers.base import Provider, check_dimensions

# Explicit sizes: fal does not document GLM Image's range [U]; these bounds follow the model's 32-px grid.
MIN_SIDE, MAX_SIDE, MULTIPLE = 256, 2048, 32
STEPS_RANGE = (10, 100)
GUIDANCE_RANGE = (1.0, 10.0)


def check_model_parameters(request: EditRequest) -> None:
    """GLM Image's documented ranges (fal's model page)."""
    if request.steps is not None and not STEPS_RANGE[0] <= request.steps <= STEPS_RANGE[1]:
        raise InputError(f"steps must be from {STEPS_RANGE[0]} to {STEPS_RANGE[1]}.")
    if request.guidance is not None and not GUIDANCE_RANGE[0] <= request.guidance <= GUIDANCE_RANGE[1]:
        raise InputError(f"guidance must be from {GUIDANCE_RANGE[0]:g} to {GUIDANCE_RANGE[1]:g}.")


def image_size(provider: str, size: Size) -> str | dict[str, int]:
    """Atelier's presets carry GLM Image's own names; an explicit size is checked, never changed."""
    if size.preset is not None:
        return size.preset.value
    assert size.width is not None and size.height is not None
    check_dimensions(provider, size.width, size.height, min_side=MIN_SIDE, max_side=MAX_SIDE, multiple=MULTIPLE)
    return {"width": size.width, "height": size.height}


def payload(provider: str, request: EditRequest | ImagineRequest) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": request.prompt, "num_images": request.count, "enable_safety_checker": True}
    if request.size is not None:
        body["image_size"] = image_size(provider, request.size)
    if request.seed is not None:
        body["seed"] = request.seed
    if isinstance(request, EditRequest):
        # Inputs go inline as data URIs: no upload round trip, nothing left in anyone's storage. (fal documents
        # them; whether Pixazo takes them is unknown [U] — a refusal would come back as a 400.)
        body["image_urls"] = [image.data_uri() for image in request.images]
        if request.steps is not None:
            body["num_inference_steps"] = request.steps
        if request.guidance is not None:
            body["guidance_scale"] = request.guidance
        if request.output_format is not None:
            body["output_format"] = request.output_format
    return body


class GlmImageProvider(Provider):
    """A host of GLM Image that takes fal's documented input schema: the checks and body are the schema's."""

    async def validate(self, request: Request) -> None:
        await super().validate(request)
        if isinstance(request, EditRequest):
            check_model_parameters(request)

    def resolve_size(self, size: Size) -> str | dict[str, int]:
        return image_size(self.name, size)

    def payload(self, request: EditRequest | ImagineRequest) -> dict[str, Any]:
        return payload(self.name, request)
