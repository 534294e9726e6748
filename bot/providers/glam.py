"""Glam AI: named filters (`POST /generate`) and virtual try-on (`POST /tryon`).

Protocol notes (../shared/docs/providers.md §3):
- the API lives under `{base}/api/v1`; auth is the `X-API-Key` header (set on the shared ProviderHttp);
- submits answer `{"event_id": ...}` (filter ids end in `-u1`; ids are opaque here), and the job is polled at
  `/result/{id}` (filters) or `/tryon/{id}` (try-on) until READY (`media_urls`) or FAILED;
- Glam takes image URLs, not bytes. Discord attachments are sent through `POST /upload` (multipart, field
  `file`), which is only secondary-sourced [S]: when it is not there the job is refused clearly;
- error bodies, the `/filters` envelope, `media_urls` while pending and where a FAILED body puts its reason
  are all unknown [U], so each is read tolerantly; an unknown *status* is an error, never a reason to keep
  polling.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp

from bot.errors import (
    ConfigError,
    InputError,
    ProviderAuthError,
    ProviderError,
    ProviderProtocolError,
    ProviderUnavailableError,
)
from bot.images import extension_for
from bot.operations import FilterRequest, ImageInput, Operation, Request, TryonRequest
from bot.providers.base import FilterInfo, KeyCheck, Provider, ProviderLimits
from bot.providers.http import CLIENT_ERRORS, HttpResponse, ProviderHttp, provider_message
from bot.providers.status import Failed, JobStatus, OutputImage, Queued, RemoteHandle, Running, Succeeded

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
# Where each operation's job is polled; the key is the handle's `operation`.
POLL_PATHS = {Operation.FILTER.value: "result", Operation.TRYON.value: "tryon"}
# The /filters envelope is unknown [U]: a bare list, or an object holding the list under one of these keys.
FILTER_LIST_KEYS = ("filters", "data", "items", "results")
# Where a FAILED body may carry its reason [U]; the first non-empty one wins.
FAILURE_REASON_KEYS = ("error", "message", "detail", "reason", "error_message")
# An upload endpoint that answers these is not there at all (FastAPI: no route / wrong method).
NOT_THERE = frozenset({404, 405})
FILTER_CACHE_S = 600.0
# A failed listing is remembered briefly, so that every filter request does not wait on the same retries.
FILTER_FAILURE_CACHE_S = 60.0


class GlamProvider(Provider):
    name = "glam"
    operations: ClassVar[frozenset[Operation]] = frozenset({Operation.FILTER, Operation.TRYON})
    # Filters take a few seconds (third-party clients poll every 2 s and see results after a few polls).
    typical_duration_s = 8.0

    def __init__(self, http: ProviderHttp | None, limits: ProviderLimits, *, base_url: str) -> None:
        super().__init__(http, limits)
        root = base_url.rstrip("/")
        # Glam's docs give the base as `https://api.glam.ai/api/v1`; accept either spelling in settings.
        self.api_url = root if root.endswith(API_PREFIX) else root + API_PREFIX
        self.filter_cache_s = FILTER_CACHE_S
        self._filters: list[FilterInfo] | None = None
        self._filters_until = 0.0
        # One listing at a time: concurrent validations share one GET instead of each sending their own.
        self._filters_lock = asyncio.Lock()

    # --- validation -----------------------------------------------------------------------------------------

    async def check_filter(self, name: str) -> None:
        if not name.strip():
            raise InputError("The filter name is empty.")
        if not await self.list_filters():
            # No list to check against (the endpoint is missing or failing): let Glam judge the name. An
            # unknown one is refused by Glam with a 4xx at submit time, before any job exists.
            return
        await super().check_filter(name)

    # --- the job lifecycle ----------------------------------------------------------------------------------

    async def submit(self, request: Request) -> RemoteHandle:
        if isinstance(request, FilterRequest):
            path = "generate"
            media_url = await self.upload(request.image)
            body: dict[str, str] = {"media_url": media_url, "filter_name": request.name}
        elif isinstance(request, TryonRequest):
            path = "tryon"
            # Sequential on purpose: a refused first upload stops before the second one is sent.
            person_url = await self.upload(request.person)
            garment_url = await self.upload(request.garment)
            body = {"media_url": person_url, "garment_url": garment_url, "mask_type": request.mask}
        else:
            raise ConfigError(f"The provider {self.name} does not offer {request.operation.value}.")
        # A submit creates a paid job: never resent after it may have arrived (ProviderHttp's rule).
        response = await self._require_http().request(
            "POST", f"{self.api_url}/{path}", json_body=body, idempotent=False
        )
        return RemoteHandle(provider=self.name, remote_id=self._event_id(response),
                            operation=request.operation.value)

    def _event_id(self, response: HttpResponse) -> str:
        try:
            data = response.json_object()
        except ProviderProtocolError as exc:
            raise ProviderProtocolError(
                self.name, "answered the submit with something that is not a JSON object; a job may still "
                "have been created"
            ) from exc
        event_id = data.get("event_id")
        # Documented as a string; a number would still name the job, so it is accepted too.
        if isinstance(event_id, int) and not isinstance(event_id, bool):
            event_id = str(event_id)
        if not isinstance(event_id, str) or not event_id.strip():
            raise ProviderProtocolError(self.name, "submit answer lacks 'event_id'; a job may exist anyway")
        return event_id.strip()

    def status_url(self, handle: RemoteHandle) -> str:
        # Built from the current settings rather than stored in the handle, so that a job resumed after a
        # restart follows a changed base URL.
        path = POLL_PATHS.get(handle.operation)
        if path is None:
            # A ProviderError (not ConfigError) so that the poll loop ends this job as failed instead of dying.
            raise ProviderProtocolError(self.name, f"cannot poll a job for {handle.operation[:40]!r}")
        return f"{self.api_url}/{path}/{quote(handle.remote_id, safe='')}"

    async def poll(self, handle: RemoteHandle) -> JobStatus:
        response = await self._require_http().request("GET", self.status_url(handle), idempotent=True)
        try:
            data = response.json()
        except ProviderProtocolError as exc:
            # A body that is not JSON at all (cut short, or a proxy's HTML page) says nothing about the job,
            # which is paid for and probably still running: ask again rather than abandon it. The poll loop's
            # deadline bounds how long. Well-formed JSON of the wrong shape is a real protocol error below.
            raise ProviderUnavailableError(
                self.name, f"answered a status check with a body that is not JSON (HTTP {response.status})",
                status=response.status,
            ) from exc
        if not isinstance(data, dict):
            raise ProviderProtocolError(self.name, "answered a status check with JSON that is not an object")
        return self.parse_status(data)

    def parse_status(self, data: dict[str, Any]) -> JobStatus:
        raw = data.get("status")
        status = raw.strip().upper() if isinstance(raw, str) else raw
        if status == "IN_QUEUE":  # documented for try-on only
            return Queued()
        if status == "IN_PROGRESS":
            return Running()
        if status == "READY":
            urls = self._media_urls(data)
            if not urls:
                return Failed(reason="Glam reported the job ready but returned no image.", charged=None,
                              code="no_images")
            return Succeeded(outputs=tuple(OutputImage(url=url) for url in urls))
        if status == "FAILED":
            # Whether Glam bills a failed job is unknown [U]: charged=None ("may have").
            return Failed(reason=self._failure_reason(data), retryable=False, charged=None, code="failed")
        raise ProviderProtocolError(self.name, f"unknown status {str(raw)[:40]!r}")

    def _media_urls(self, data: dict[str, Any]) -> list[str]:
        value = data.get("media_urls")
        if value is None:
            return []
        if isinstance(value, str):  # tolerated: a single URL not wrapped in a list
            value = [value]
        if not isinstance(value, list):
            raise ProviderProtocolError(self.name, "'media_urls' is not a list")
        urls: list[str] = []
        for item in value:
            if not isinstance(item, str):
                raise ProviderProtocolError(self.name, "'media_urls' holds something that is not a URL")
            if item.strip():
                urls.append(item.strip())
        return urls

    def _failure_reason(self, data: dict[str, Any]) -> str:
        for key in FAILURE_REASON_KEYS:
            value = data.get(key)
            if value:
                # provider_message reads strings, FastAPI-style lists and nested objects, and caps length.
                text = provider_message(json.dumps(value).encode())
                return self._require_http().redact(text)
        return "Glam reported the job as failed without giving a reason."

    async def cancel(self, handle: RemoteHandle) -> bool:
        # Glam documents no cancel: a job runs to its end at Glam whatever happens here.
        return False

    # --- uploads --------------------------------------------------------------------------------------------

    async def upload(self, image: ImageInput) -> str:
        """Put an input image where Glam can fetch it; returns the URL to pass as media_url/garment_url."""
        writer = aiohttp.MultipartWriter("form-data")
        part = writer.append(image.data, {"Content-Type": image.mime})
        # A neutral file name: the user's own file name is nobody else's business.
        part.set_content_disposition("form-data", name="file", filename=f"image.{extension_for(image.mime)}")
        # Rendered to bytes once, so that a retried attempt sends exactly the same body again.
        body = await writer.as_bytes()
        # Uploading creates no paid job, so it is retried like a read (5xx, broken connections).
        response = await self._require_http().request(
            "POST", f"{self.api_url}/upload", data=body, headers={"Content-Type": writer.content_type},
            idempotent=True, accept=NOT_THERE,
        )
        if response.status in NOT_THERE:
            raise ConfigError(
                f"{self.name} cannot take an image sent from Discord: its upload endpoint is not available "
                f"(HTTP {response.status}) and Glam only accepts image URLs. Choose another provider."
            )
        data = response.json_object()
        url = data.get("file_url") or data.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ProviderProtocolError(self.name, "upload answer lacks a usable 'file_url'")
        return url

    # --- catalogue and health -------------------------------------------------------------------------------

    async def list_filters(self) -> list[FilterInfo]:
        """Glam's filters, cached for ten minutes. A failing endpoint gives [] (logged); auth errors raise."""
        async with self._filters_lock:
            if self._filters is not None and time.monotonic() < self._filters_until:
                return list(self._filters)
            try:
                response = await self._require_http().request(
                    "GET", f"{self.api_url}/filters", idempotent=True
                )
                filters = self._parse_filters(response.json())
                ttl = self.filter_cache_s
            except ProviderAuthError:
                raise
            except ProviderError as exc:
                # The message is already redacted by ProviderHttp; it names glam.
                log.warning("listing filters failed; filter names go unchecked until it works again: %s", exc)
                filters, ttl = [], min(self.filter_cache_s, FILTER_FAILURE_CACHE_S)
            self._filters, self._filters_until = filters, time.monotonic() + ttl
            return list(filters)

    def _parse_filters(self, data: Any, depth: int = 0) -> list[FilterInfo]:
        items: Any = data
        if isinstance(data, dict):
            items = next((data[k] for k in FILTER_LIST_KEYS if isinstance(data.get(k), list | dict)), None)
            if isinstance(items, dict) and depth < 1:  # e.g. {"data": {"filters": [...]}}
                return self._parse_filters(items, depth + 1)
        if not isinstance(items, list):
            raise ProviderProtocolError(self.name, "the filter list has a shape that cannot be read")
        found: dict[str, FilterInfo] = {}
        for item in items:
            name: Any = item
            description = ""
            if isinstance(item, dict):
                name = item.get("name") or item.get("filter_name")
                description = _describe(item)
            if isinstance(name, str) and name.strip():
                found.setdefault(name.strip(), FilterInfo(name=name.strip(), provider=self.name,
                                                          description=description, credits=_credits(item)))
        if items and not found:
            raise ProviderProtocolError(self.name, "the filter list holds no filter names")
        return list(found.values())

    async def check_key(self) -> KeyCheck:
        # Listing filters is free and Glam checks the key on it.
        try:
            response = await self._require_http().request(
                "GET", f"{self.api_url}/filters", idempotent=True, accept=CLIENT_ERRORS
            )
        except ProviderAuthError as exc:
            return KeyCheck(False, exc.detail)
        if response.status >= 400:
            # A missing route (404) is answered before any key check, so it says nothing about the key.
            return KeyCheck(None, f"the key could not be checked: /filters answered HTTP {response.status}")
        return KeyCheck(True, "key accepted")


def _describe(item: dict[str, Any]) -> str:
    parts: list[str] = []
    text = item.get("description") or item.get("title")
    if isinstance(text, str) and text.strip():
        parts.append(text.strip()[:100])
    price = item.get("generation_price")
    if isinstance(price, int | float) and not isinstance(price, bool):
        parts.append(f"{price:g} credits")
    return "; ".join(parts)


def _credits(item: Any) -> Decimal | None:
    """A filter's generation_price (credits), exactly as the catalogue wrote it; None when it names none."""
    price = item.get("generation_price") if isinstance(item, dict) else None
    if isinstance(price, bool) or not isinstance(price, int | float) or price < 0:
        return None
    return Decimal(str(price))  # the JSON text of the number, not its binary float
