"""Novita's v3 async API for GLM Image: `POST /v3/async/glm-image`, then `GET /v3/async/task-result`.

Novita retired GLM Image on 2026-07-07 (§2.6); this adapter is kept, unchanged, for `NOVITA_MODEL=glm-image`
(accounts and fakes where it still answers). A submit answered as retired raises ModelRetiredError, so the job
moves to the next provider; the default model is Seedream 5.0 lite (bot.providers.novita_seedream).

Protocol notes (../shared/docs/providers.md §2): text-to-image only; one image per task; the task result
nests its state in `task` (QUEUED -> PROCESSING -> SUCCEED | FAILED, plus a transient UNKNOWN that Novita's JS
SDK knows); numbers arrive as ints or as numeric strings (`image_url_ttl`, `extra.seed`, `debug_info.*`), so
every number is parsed leniently; image URLs are pre-signed and expire after `image_url_ttl` seconds; error
bodies are `{code, reason, message, metadata}`, which the shared `provider_message` reads; there is no
documented cancel.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from bot.errors import InputError, ProviderProtocolError
from bot.operations import ImagineRequest, Operation, Request, Size, SizePreset
from bot.providers.base import KeyCheck, Provider, ProviderLimits, check_dimensions
from bot.providers.http import ProviderHttp
from bot.providers.retirement import ModelCheck, probe_endpoint, submit_checking_retirement
from bot.providers.status import Failed, JobStatus, OutputImage, Queued, RemoteHandle, Running, Succeeded

MODEL = "glm-image"
REPLACEMENT = "NOVITA_MODEL=seedream-5.0-lite"  # the replacement Novita's changelog names
SUBMIT_PATH = "/v3/async/glm-image"
RESULT_PATH = "/v3/async/task-result"
# Custom sizes, as documented: both sides 1024-2048 px in multiples of 32, at most 2^22 pixels.
MIN_SIDE, MAX_SIDE, MULTIPLE, MAX_PIXELS = 1024, 2048, 32, 4_194_304
DEFAULT_SIZE = "1280x1280"  # Novita's own default, sent explicitly so the size never depends on a default
# Atelier's presets mapped onto valid sizes of the same aspect ratio (fal-style presets can fall below
# GLM Image's 1024-px minimum, so they are scaled up, never cropped or distorted).
PRESET_SIZES: dict[SizePreset, tuple[int, int]] = {
    SizePreset.SQUARE_HD: (1280, 1280),
    SizePreset.SQUARE: (1024, 1024),
    SizePreset.PORTRAIT_4_3: (1056, 1408),
    SizePreset.LANDSCAPE_4_3: (1408, 1056),
    SizePreset.PORTRAIT_16_9: (1152, 2048),
    SizePreset.LANDSCAPE_16_9: (2048, 1152),
}
# The nil UUID names no task: asking for its result costs nothing and still needs a valid key.
PROBE_TASK_ID = "00000000-0000-0000-0000-000000000000"
IMAGE_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp"}

QUEUED, PROCESSING, SUCCEED, FAILED = (
    "TASK_STATUS_QUEUED", "TASK_STATUS_PROCESSING", "TASK_STATUS_SUCCEED", "TASK_STATUS_FAILED",
)
# Only in Novita's JS SDK enum; never terminal, so it is read as "still working, nothing known".
UNKNOWN = "TASK_STATUS_UNKNOWN"


# --- the task-result body, parsed leniently ---------------------------------------------------------------


def _lenient_number(value: Any) -> float | None:
    """Numbers come as 3600, "3600", 3600.0 or "" (documented `debug_info` example); junk reads as unknown."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _lenient_int(value: Any) -> int | None:
    # int() first: a seed such as "158881667" or a 64-bit one must not lose digits through a float.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    number = _lenient_number(value)
    return int(number) if number is not None and number.is_integer() else None


def _lenient_text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


Number = Annotated[float | None, BeforeValidator(_lenient_number)]
Integer = Annotated[int | None, BeforeValidator(_lenient_int)]
Text = Annotated[str | None, BeforeValidator(_lenient_text)]


class _Lenient(BaseModel):
    # Novita adds fields freely (videos, audios, debug_info...): unknown keys are ignored, never an error.
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Task(_Lenient):
    task_id: Text = None
    status: Text = None
    reason: Text = None
    eta: Number = None
    progress_percent: Number = None


class _Image(_Lenient):
    image_url: Text = None
    image_url_ttl: Integer = None
    image_type: Text = None
    nsfw_detection_result: Any = None


class _Extra(_Lenient):
    seed: Integer = None
    has_nsfw_contents: list[Any] | None = None


def _none_is_empty(value: Any) -> Any:
    return [] if value is None else value


def _none_is_default(value: Any) -> Any:
    return {} if value is None else value


class TaskResult(_Lenient):
    task: Annotated[_Task, BeforeValidator(_none_is_default)] = _Task()
    images: Annotated[list[_Image], BeforeValidator(_none_is_empty)] = []
    extra: Annotated[_Extra, BeforeValidator(_none_is_default)] = _Extra()


def _is_flagged(result: Any) -> bool:
    """Read `nsfw_detection_result` whatever its shape: null (the documented example), a bool, a word, or
    novita-client's `{valid, confidence}` where `valid` means "the detector fired"."""
    if result is None:
        return False
    if isinstance(result, bool):
        return result
    if isinstance(result, str):
        return result.strip().lower() in {"true", "nsfw", "blocked", "flagged"}
    if isinstance(result, dict):
        return any(bool(result.get(key)) for key in ("valid", "nsfw", "is_nsfw", "flagged"))
    return False


def _positive(value: float | None) -> float | None:
    return value if value is not None and value > 0 else None


# --- the adapter ------------------------------------------------------------------------------------------


class NovitaProvider(Provider):
    name = "novita"
    model: ClassVar[str | None] = MODEL
    operations: ClassVar[frozenset[Operation]] = frozenset({Operation.IMAGINE})
    typical_duration_s = 20.0  # z.ai: "hd ... takes about 20 seconds"

    def __init__(
        self,
        http: ProviderHttp | None,
        limits: ProviderLimits,
        *,
        base_url: str,
        webhook_url: str | None = None,
        watermark: bool = True,
    ) -> None:
        super().__init__(http, limits)
        self.base_url = base_url.rstrip("/")
        # When set, Novita also POSTs the finished task result here (`extra.webhook.url`, the generic v3
        # mechanism; whether glm-image honours `extra` is not documented). Polling stays the source of truth.
        self.webhook_url = webhook_url
        # GLM Image marks its output as AI-generated unless told not to; the docs call the mark the
        # policy-compliant default, and z.ai offers removal only to customers who signed a disclaimer. So it
        # stays on unless the operator deliberately turns it off.
        self.watermark = watermark

    # --- validation ----------------------------------------------------------------------------------------

    async def validate(self, request: Request) -> None:
        await super().validate(request)
        if isinstance(request, ImagineRequest):
            self._check_supported(request)

    def _check_supported(self, request: ImagineRequest) -> None:
        if request.count != 1:
            raise InputError(
                f"{self.name} makes one image per job; ask for 1 image, or choose another provider for "
                f"{request.count}."
            )
        if request.seed is not None:
            # Novita documents no seed for GLM Image; dropping it silently would hand back an image that the
            # seed does not reproduce.
            raise InputError(
                f"{self.name} cannot take a seed for GLM Image; leave the seed out or use another provider."
            )

    def resolve_size(self, size: Size) -> str:
        if size.preset is not None:
            width, height = PRESET_SIZES[size.preset]
        else:
            assert size.width is not None and size.height is not None
            width, height = size.width, size.height
            check_dimensions(self.name, width, height, min_side=MIN_SIDE, max_side=MAX_SIDE,
                             multiple=MULTIPLE, max_pixels=MAX_PIXELS)
        return f"{width}x{height}"

    def payload(self, request: ImagineRequest) -> dict[str, Any]:
        # Checked again here so that nothing unsupported is sent, even by a caller that skipped validate().
        self._check_supported(request)
        body: dict[str, Any] = {
            "prompt": request.prompt,
            "size": self.resolve_size(request.size) if request.size is not None else DEFAULT_SIZE,
            "quality": "hd",  # the only documented value
            "watermark_enabled": self.watermark,
        }
        if self.webhook_url:
            body["extra"] = {"webhook": {"url": self.webhook_url}}
        return body

    # --- the job lifecycle ---------------------------------------------------------------------------------

    @property
    def result_url(self) -> str:
        return f"{self.base_url}{RESULT_PATH}"

    async def submit(self, request: Request) -> RemoteHandle:
        if not isinstance(request, ImagineRequest):
            raise InputError(f"{self.name} offers only imagine.")
        http = self._require_http()
        response = await submit_checking_retirement(http, f"{self.base_url}{SUBMIT_PATH}", model=MODEL,
                                                    instead=REPLACEMENT, json_body=self.payload(request))
        task_id = response.json_object().get("task_id")
        if not isinstance(task_id, str) or not task_id:
            raise ProviderProtocolError(self.name, "submit answer lacks a task_id")
        # The result URL is kept on the handle: the task lives at the host that took it, even if the
        # configured base URL changes before a restart resumes polling.
        return RemoteHandle(provider=self.name, remote_id=task_id, operation=request.operation.value,
                            status_url=self.result_url, extra={"webhook": self.webhook_url})

    async def poll(self, handle: RemoteHandle) -> JobStatus:
        http = self._require_http()
        response = await http.request(
            "GET", handle.status_url or self.result_url, params={"task_id": handle.remote_id},
            idempotent=True,
            # Novita lists Content-Type as required even on this GET.
            headers={"Content-Type": "application/json"},
            accept={404},
        )
        if response.status == 404:
            return Failed(reason="novita no longer knows this task; its result may have expired",
                          charged=None, code="not_found")
        return self.parse_result(response.json_object())

    def parse_result(self, data: dict[str, Any]) -> JobStatus:
        """A task-result body as a status: what a poll answers, and the `payload` of a webhook event."""
        try:
            result = TaskResult.model_validate(data)
        except ValidationError as exc:
            raise ProviderProtocolError(self.name, "answered a task result of an unexpected shape") from exc
        task = result.task
        if task.status == QUEUED:
            return Queued(eta_s=_positive(task.eta))
        if task.status == PROCESSING:
            progress = None if task.progress_percent is None else min(100.0, max(0.0, task.progress_percent))
            return Running(progress=progress, eta_s=_positive(task.eta))
        if task.status == UNKNOWN:
            return Running()
        if task.status == FAILED:
            # Whether a failed task is billed is not documented, so the charge is unknown.
            return Failed(reason=task.reason or "novita reported the task failed without a reason",
                          charged=None, code="task_failed")
        if task.status == SUCCEED:
            return self._succeeded(result)
        raise ProviderProtocolError(self.name, f"unknown task status {str(task.status)[:40]!r}")

    def _succeeded(self, result: TaskResult) -> JobStatus:
        flags = result.extra.has_nsfw_contents or []
        outputs = []
        for i, image in enumerate(result.images):
            if not image.image_url:
                continue
            nsfw = _is_flagged(image.nsfw_detection_result) or (i < len(flags) and bool(flags[i]))
            mime = IMAGE_TYPES.get((image.image_type or "").lower())
            outputs.append(OutputImage(url=image.image_url, nsfw=nsfw, mime=mime))
        if not outputs:
            return Failed(reason="novita reported success but returned no image", charged=None,
                          code="no_images")
        return Succeeded(outputs=tuple(outputs), seed=result.extra.seed)

    async def cancel(self, handle: RemoteHandle) -> bool:
        # Novita documents no cancel for v3 async tasks: a task runs to its end once submitted.
        return False

    async def check_key(self) -> KeyCheck:
        # Asking for the result of a task that does not exist costs nothing: 401/403 means the key is refused,
        # any other answer (404 for the unknown task) means Novita accepted it.
        return await self._probe_key(self.result_url, params={"task_id": PROBE_TASK_ID},
                                     headers={"Content-Type": "application/json"})

    async def check_model(self) -> ModelCheck:
        return await probe_endpoint(self._require_http(), f"{self.base_url}{SUBMIT_PATH}", model=MODEL,
                                    instead=REPLACEMENT)
