"""Novita's Seedream 5.0 lite: `POST /v3/seedream-5.0-lite`, imagine and edit, answered synchronously.

Protocol notes (../shared/docs/providers.md §2.6): Novita's named replacement for GLM Image, retired there on
2026-07-07. The call answers `{"images": [url, ...]}` in its own response: no task id, nothing to poll, no
webhook (the runner treats it as described in bot.providers.synchronous). Body: `prompt`; `size` as `WxH` with
3,686,400-10,404,496 pixels in all and an aspect ratio between 1/16 and 16; `image`, 1-14 input images as URLs
or base64 (which makes it an edit); `watermark` (Novita's default is true); `sequential_image_generation`
"disabled" (one image) or "auto" with `sequential_image_generation_options.max_images` for a set, of which the
model may return fewer. No seed, steps, guidance or output format is documented, so a request naming one is
refused rather than silently changed. Errors have Novita's common shape `{code, reason, message, metadata}`.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from bot.errors import InputError, ProviderProtocolError, ProviderUnavailableError
from bot.operations import EditRequest, ImagineRequest, Operation, Request, Size, SizePreset
from bot.providers.base import KeyCheck, Provider, ProviderLimits
from bot.providers.http import ProviderHttp
from bot.providers.novita import NovitaProvider
from bot.providers.retirement import ModelCheck, probe_endpoint, submit_checking_retirement
from bot.providers.status import JobStatus, OutputImage, RemoteHandle
from bot.providers.synchronous import SYNCHRONOUS, SynchronousCallInterrupted, answered, settle

MODEL = "seedream-5.0-lite"
PATH = "/v3/seedream-5.0-lite"
RESULT_PATH = "/v3/async/task-result"  # only for the free key probe: an unknown task costs nothing
PROBE_TASK_ID = "00000000-0000-0000-0000-000000000000"
MIN_PIXELS, MAX_PIXELS = 3_686_400, 10_404_496
MAX_ASPECT = 16
DEFAULT_SIZE = "2048x2048"  # Novita's own default, sent explicitly so the size never depends on a default
# Atelier's presets on valid sizes of the same aspect ratio (each at least 3,686,400 pixels).
PRESET_SIZES: dict[SizePreset, tuple[int, int]] = {
    SizePreset.SQUARE_HD: (2048, 2048),
    SizePreset.SQUARE: (1920, 1920),
    SizePreset.PORTRAIT_4_3: (1728, 2304),
    SizePreset.LANDSCAPE_4_3: (2304, 1728),
    SizePreset.PORTRAIT_16_9: (1440, 2560),
    SizePreset.LANDSCAPE_16_9: (2560, 1440),
}


def check_size(provider: str, width: int, height: int) -> None:
    """Refuse an explicit WxH Seedream cannot take, naming the valid range."""
    pixels = width * height
    aspect_ok = width > 0 and height > 0 and 1 / MAX_ASPECT <= width / height <= MAX_ASPECT
    if not (MIN_PIXELS <= pixels <= MAX_PIXELS and aspect_ok):
        raise InputError(
            f"Size {width}x{height} cannot be used: {provider} ({MODEL}) takes sizes of {MIN_PIXELS:,} to "
            f"{MAX_PIXELS:,} pixels in all (e.g. 1920x1920 to 3225x3225) with an aspect ratio between 1:16 "
            f"and 16:1.")


class NovitaSeedreamProvider(Provider):
    name = "novita"
    model: ClassVar[str | None] = MODEL
    operations: ClassVar[frozenset[Operation]] = frozenset({Operation.IMAGINE, Operation.EDIT})
    synchronous: ClassVar[bool] = True
    typical_duration_s = 30.0  # "tens of seconds" [I]

    def __init__(self, http: ProviderHttp | None, limits: ProviderLimits, *, base_url: str,
                 watermark: bool = False) -> None:
        # `http` carries NOVITA_SYNC_TIMEOUT_S as its timeout: the one call lasts as long as the generation.
        super().__init__(http, limits)
        self.base_url = base_url.rstrip("/")
        self.watermark = watermark

    # --- validation ----------------------------------------------------------------------------------------

    async def validate(self, request: Request) -> None:
        await super().validate(request)
        if isinstance(request, EditRequest | ImagineRequest):
            self._check_supported(request)

    def _check_supported(self, request: EditRequest | ImagineRequest) -> None:
        unsupported = ["seed"] if request.seed is not None else []
        if isinstance(request, EditRequest):
            unsupported += [name for name, value in (("steps", request.steps), ("guidance", request.guidance),
                                                     ("format", request.output_format)) if value is not None]
        if unsupported:
            # Dropping them silently would hand back an image they do not describe.
            raise InputError(f"{self.name} ({MODEL}) cannot take {', '.join(unsupported)}; leave "
                             f"{'it' if len(unsupported) == 1 else 'them'} out or use another provider.")

    def resolve_size(self, size: Size) -> str:
        if size.preset is not None:
            width, height = PRESET_SIZES[size.preset]
        else:
            assert size.width is not None and size.height is not None
            width, height = size.width, size.height
            check_size(self.name, width, height)
        return f"{width}x{height}"

    def payload(self, request: EditRequest | ImagineRequest) -> dict[str, Any]:
        # Checked again here so that nothing unsupported is sent, even by a caller that skipped validate().
        self._check_supported(request)
        body: dict[str, Any] = {
            "prompt": request.prompt,
            "size": self.resolve_size(request.size) if request.size is not None else DEFAULT_SIZE,
            "watermark": self.watermark,
        }
        if isinstance(request, EditRequest):
            # Inline as data URIs, as the other adapters send inputs: no upload, nothing left in storage.
            body["image"] = [image.data_uri() for image in request.images]
        if request.count == 1:
            body["sequential_image_generation"] = "disabled"
        else:
            body["sequential_image_generation"] = "auto"
            body["sequential_image_generation_options"] = {"max_images": request.count}
        return body

    # --- the one call ----------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{self.base_url}{PATH}"

    async def submit(self, request: Request) -> RemoteHandle:
        """The paid call itself: its answer carries the images, returned as an already-answered handle."""
        if not isinstance(request, EditRequest | ImagineRequest):
            raise InputError(f"{self.name} ({MODEL}) offers only imagine and edit.")
        http = self._require_http()
        try:
            response = await submit_checking_retirement(http, self.url, model=MODEL, instead=self.instead,
                                                        json_body=self.payload(request))
        except ProviderUnavailableError as exc:
            if exc.sent and exc.status is None:  # sent, and no answer came: a timeout or a dropped connection
                raise SynchronousCallInterrupted(self.name, exc.detail.removeprefix("POST ")) from exc
            raise
        try:
            images = response.json_object().get("images")
        except ProviderProtocolError:
            images = None
        # An answer, even a garbled one, means the call ran and may have been billed: it settles as "answered with
        # no image" (charged unknown, the member refunded), never as a call that cost nothing.
        outputs = [OutputImage(url=url) for url in images or [] if isinstance(url, str) and url.startswith("http")] \
            if isinstance(images, list) else []
        return answered(self.name, f"call-{uuid.uuid4()}", request.operation.value, outputs)

    @property
    def instead(self) -> str:
        return "NOVITA_MODEL to another model Novita offers (see .env.example)"

    async def poll(self, handle: RemoteHandle) -> JobStatus:
        if handle.extra.get(SYNCHRONOUS) is not True:
            # A task of Novita's task API (GLM Image), sent before NOVITA_MODEL was switched: Novita has its result.
            return await NovitaProvider(self.http, self.limits, base_url=self.base_url).poll(handle)
        # Nothing to ask Novita: the call's answer (or its absence) is in the stored handle.
        return settle(handle, interrupted_because="Atelier stopped during the call to novita")

    async def cancel(self, handle: RemoteHandle) -> bool:
        return False  # a synchronous call cannot be cancelled once sent

    async def check_key(self) -> KeyCheck:
        # The result of a task that does not exist costs nothing and still needs a valid key.
        return await self._probe_key(f"{self.base_url}{RESULT_PATH}", params={"task_id": PROBE_TASK_ID},
                                     headers={"Content-Type": "application/json"})

    async def check_model(self) -> ModelCheck:
        return await probe_endpoint(self._require_http(), self.url, model=MODEL, instead=self.instead)
