"""The one async interface every provider adapter implements.

An adapter maps Atelier's requests onto one API: payloads, endpoints and status mapping only. Retries, timeouts
and error classification live in `bot.providers.http`; the poll loop lives in `bot.providers.polling`.
Adapters never import discord.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from bot.errors import ConfigError, InputError, OutputError, ProviderAuthError
from bot.images import ImageLimits, TooManyPixelsError, check_image
from bot.operations import EditRequest, FilterRequest, ImagineRequest, Operation, Request, Size, TryonRequest
from bot.providers.http import CLIENT_ERRORS, ProviderHttp
from bot.providers.status import JobStatus, OutputImage, RemoteHandle

MAX_COUNT = 4


@dataclass(frozen=True, slots=True)
class FilterInfo:
    name: str
    provider: str
    description: str = ""
    credits: Decimal | None = None  # what the provider's catalogue says one image costs, in its own credits


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """ok is True (accepted), False (rejected) or None (cannot be checked without spending money)."""

    ok: bool | None
    message: str


@dataclass(frozen=True, slots=True)
class ProviderLimits:
    image: ImageLimits
    max_prompt_chars: int
    max_output_bytes: int
    max_parallel: int = 2
    # Outputs are decoded like inputs, so they are capped like inputs: a tiny file can hold a huge image.
    max_output_megapixels: float = 36.0


@dataclass(frozen=True, slots=True)
class FetchedImage:
    data: bytes
    mime: str
    width: int
    height: int
    nsfw: bool = False


class Provider(ABC):
    name: ClassVar[str]
    operations: ClassVar[frozenset[Operation]]
    # Typical seconds from submit to result, per operation: the poll schedule's first guess.
    typical_duration_s: ClassVar[float] = 10.0
    # Where the provider is asked to call when a job ends (adapters that support webhooks set it).
    webhook_url: str | None = None
    # True only where sending the same job again costs nothing (the local provider): after a restart such a
    # job is simply run again instead of being failed as "interrupted".
    free_to_resubmit: ClassVar[bool] = False
    # True where the submit's own answer carries the images (no task to poll): see bot.providers.synchronous.
    synchronous: ClassVar[bool] = False
    # The model this adapter serves, where the provider offers several and may retire one (None: not tracked).
    model: ClassVar[str | None] = None

    def __init__(self, http: ProviderHttp | None, limits: ProviderLimits) -> None:
        self.http = http
        self.limits = limits

    def supports(self, operation: Operation) -> bool:
        return operation in self.operations

    # --- validation, before anything is sent -------------------------------------------------------------

    async def validate(self, request: Request) -> None:
        """Refuse anything this provider cannot take. Raises InputError or ConfigError; sends nothing."""
        if not self.supports(request.operation):
            raise ConfigError(f"The provider {self.name} does not offer {request.operation.value}.")
        if isinstance(request, EditRequest | ImagineRequest):
            self.check_prompt(request.prompt)
            if not 1 <= request.count <= MAX_COUNT:
                raise InputError(f"count must be between 1 and {MAX_COUNT}.")
            if request.size is not None:
                self.resolve_size(request.size)
        if isinstance(request, EditRequest) and not 1 <= len(request.images) <= MAX_COUNT:
            raise InputError(f"edit takes between 1 and {MAX_COUNT} images.")
        if isinstance(request, FilterRequest):
            await self.check_filter(request.name)
        if isinstance(request, TryonRequest) and request.mask not in ("overall", "upper", "lower"):
            raise InputError("mask must be overall, upper or lower.")

    def check_prompt(self, prompt: str) -> None:
        if not prompt.strip():
            raise InputError("The prompt is empty.")
        if len(prompt) > self.limits.max_prompt_chars:
            raise InputError(
                f"The prompt is {len(prompt)} characters; the limit is {self.limits.max_prompt_chars}."
            )

    async def check_filter(self, name: str) -> None:
        names = {f.name for f in await self.list_filters()}
        if name not in names:
            raise InputError(f"Unknown filter {name[:60]!r} for {self.name}. Try: {', '.join(sorted(names)[:12])}.")

    def resolve_size(self, size: Size) -> Any:
        """Map a size onto what this API takes; refuse an explicit size it cannot take (never change it)."""
        raise InputError(f"{self.name} does not take a size.")

    # --- the job lifecycle ---------------------------------------------------------------------------------

    @abstractmethod
    async def submit(self, request: Request) -> RemoteHandle:
        """Send the paid request once. Returns the handle to poll."""

    @abstractmethod
    async def poll(self, handle: RemoteHandle) -> JobStatus:
        """One status check. Unknown statuses raise ProviderProtocolError."""

    async def cancel(self, handle: RemoteHandle) -> bool:
        """Best-effort cancel at the provider; True when the provider accepted it."""
        return False

    async def fetch(self, output: OutputImage) -> FetchedImage:
        """Download one output with a size cap and check that it is an image."""
        if output.data is not None:
            data = output.data
        elif output.url and self.http is not None:
            data = await self.http.download(output.url, max_bytes=self.limits.max_output_bytes)
        else:
            raise OutputError(self.name, "a result had no image")
        try:
            checked = await asyncio.to_thread(check_image, data, label="output",
                                              max_megapixels=self.limits.max_output_megapixels)
        except TooManyPixelsError as exc:
            raise OutputError(self.name, f"returned an image too large to handle: {exc}") from exc
        except InputError as exc:
            raise OutputError(self.name, f"returned an output that is not an image ({exc})") from exc
        return FetchedImage(data=checked.data, mime=checked.mime, width=checked.width, height=checked.height,
                            nsfw=output.nsfw)

    # --- catalogue and health --------------------------------------------------------------------------------

    async def list_filters(self) -> list[FilterInfo]:
        return []

    async def check_key(self) -> KeyCheck:
        return KeyCheck(None, "the key cannot be checked without spending money; it is used on the first job")

    async def _probe_key(self, url: str, **request: Any) -> KeyCheck:
        """Check the key with a free request (a status of a job that cannot exist): 401/403 means rejected,
        any other answer (404, 405...) means the provider accepted it."""
        try:
            await self._require_http().request("GET", url, idempotent=True, accept=CLIENT_ERRORS, **request)
        except ProviderAuthError as exc:
            return KeyCheck(False, exc.detail)
        return KeyCheck(True, "key accepted")

    def _require_http(self) -> ProviderHttp:
        if self.http is None:  # pragma: no cover - only the local provider has none
            raise ConfigError(f"{self.name} has no HTTP client")
        return self.http


def check_dimensions(
    provider: str,
    width: int,
    height: int,
    *,
    min_side: int,
    max_side: int,
    multiple: int = 1,
    max_pixels: int | None = None,
) -> None:
    """Refuse an explicit WxH the provider cannot take, naming the valid range."""
    rule = f"{provider} takes sizes with each side from {min_side} to {max_side}"
    if multiple > 1:
        rule += f", in multiples of {multiple}"
    if max_pixels:
        rule += f", at most {max_pixels:,} pixels in all"
    ok = min_side <= width <= max_side and min_side <= height <= max_side
    ok = ok and width % multiple == 0 and height % multiple == 0
    ok = ok and (max_pixels is None or width * height <= max_pixels)
    if not ok:
        raise InputError(f"Size {width}x{height} cannot be used: {rule}.")
