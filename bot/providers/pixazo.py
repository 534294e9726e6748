"""Pixazo gateway (Azure API Management) for GLM Image: text-to-image (imagine) and image-to-image (edit).

Protocol notes (../shared/docs/providers.md §4): the request bodies mirror fal's glm-image input schema; the
submit answer carries `request_id` and often `polling_url`; a job is polled either through the model-specific
`POST …-request-result {"request_id"}` or the generic `…/v2/requests/status/{id}` (the doc page says POST,
third-party clients use GET); statuses are QUEUED, PROCESSING, COMPLETED, FAILED and ERROR (CANCELLED is
handled defensively); finished images are in `output.media_url`, a list or a single string.

Where the doc is unknown [U] this adapter is tolerant: status names in any case, `media_url` as a list or a
string, `images[].url` as well, failure reasons from `error.message`, `error` or `message`, and a status GET
that answers 405.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal
from urllib.parse import quote, urljoin, urlsplit

from bot.errors import ProviderProtocolError
from bot.operations import EditRequest, ImagineRequest, Operation, Request
from bot.providers.base import KeyCheck, ProviderLimits
from bot.providers.glm import GlmImageProvider

# GLM Image has the same size rules at Pixazo as at fal, which Pixazo appears to proxy (§4.1 [I]).
from bot.providers.http import MAX_ERROR_TEXT, ProviderHttp
from bot.providers.status import (
    Cancelled,
    Failed,
    JobStatus,
    OutputImage,
    Queued,
    RemoteHandle,
    Running,
    Succeeded,
)

PollStyle = Literal["result", "status"]
POLL_STYLES: tuple[PollStyle, ...] = ("result", "status")

# Submit path per operation; the model-specific result endpoint is the same path with "-result" appended.
SUBMIT_PATHS = {
    Operation.IMAGINE: "/glm-image/v1/glm-image-request",
    Operation.EDIT: "/glm-image-image-to-image/v1/glm-image-image-to-image-request",
}
STATUS_PATH = "/v2/requests/status/"
# A request id that cannot exist: asking for its status costs nothing and still passes the key check.
NIL_REQUEST_ID = "00000000-0000-0000-0000-000000000000"

# Documented names first; the others are harmless synonyms accepted because the exact vocabulary is [U].
PENDING_QUEUED = {"QUEUED", "IN_QUEUE", "PENDING"}
PENDING_RUNNING = {"PROCESSING", "IN_PROGRESS", "RUNNING"}
DONE = {"COMPLETED", "SUCCEEDED", "SUCCESS"}
# Value: is the failure retryable? FAILED is the model failing the input. ERROR is what Pixazo says to back
# off on, like a 500 (§4.2): an infrastructure fault, so the same request may well succeed later.
FAILED = {"FAILED": False, "ERROR": True}
CANCELLED = {"CANCELLED", "CANCELED"}


class PixazoProvider(GlmImageProvider):
    name = "pixazo"
    operations: ClassVar[frozenset[Operation]] = frozenset({Operation.EDIT, Operation.IMAGINE})
    # Pixazo: "processing typically takes 5–15 s"; wait 2–3 s before the first poll.
    typical_duration_s = 10.0

    def __init__(self, http: ProviderHttp | None, limits: ProviderLimits, *, base_url: str,
                 poll_style: PollStyle = "result") -> None:
        super().__init__(http, limits)
        if poll_style not in POLL_STYLES:
            raise ValueError(f"poll_style must be one of {POLL_STYLES}")
        self.base_url = base_url.rstrip("/")
        self.poll_style: PollStyle = poll_style
        # The generic status endpoint is documented as POST but used with GET in the wild. GET first; once
        # this gateway answers 405, stay on POST for every later poll rather than waste a request each time.
        self._status_method = "GET"

    # --- the job lifecycle ------------------------------------------------------------------------------

    async def submit(self, request: Request) -> RemoteHandle:
        assert isinstance(request, EditRequest | ImagineRequest)
        # Local and cheap: a paid request must never leave with a prompt or size the provider would refuse.
        await self.validate(request)
        http = self._require_http()
        path = SUBMIT_PATHS[request.operation]
        # Not idempotent: resending a submit whose answer was lost could create a second paid job.
        response = await http.request("POST", f"{self.base_url}{path}", json_body=self.payload(request),
                                      idempotent=False)
        data = response.json_object()
        request_id = data.get("request_id") or data.get("requestId")
        usable = isinstance(request_id, str | int) and not isinstance(request_id, bool)
        remote_id = str(request_id).strip() if usable else ""
        if not remote_id:
            raise ProviderProtocolError(self.name, "submit answer lacks 'request_id'")
        # Quoted: the id comes from the network and goes into a path.
        status_url = f"{self.base_url}{STATUS_PATH}{quote(remote_id, safe='')}"
        result_url = f"{self.base_url}{path}-result"
        polling_url = self._own_url(data.get("polling_url"))
        if polling_url is not None:
            # polling_url's exact form is [U]. Third-party clients GET it as the generic status URL; a
            # model-specific result URL is recognised too, rather than being polled with the wrong method.
            if urlsplit(polling_url).path.endswith("-request-result"):
                result_url = polling_url
            else:
                status_url = polling_url
        return RemoteHandle(
            provider=self.name, remote_id=remote_id, operation=request.operation.value,
            status_url=status_url, result_url=result_url, extra={"poll_style": self.poll_style},
        )

    def _own_url(self, value: Any) -> str | None:
        """polling_url made absolute, or None when it is absent or points at another host.

        Every request carries the subscription key, so a URL anywhere but the configured gateway is ignored
        (the documented generic status URL is used instead) rather than sent the key.
        """
        if not isinstance(value, str) or not value.strip():
            return None
        url = urljoin(f"{self.base_url}/", value.strip())
        own, theirs = urlsplit(self.base_url), urlsplit(url)
        if (theirs.scheme, theirs.netloc) != (own.scheme, own.netloc):
            return None
        return url

    async def poll(self, handle: RemoteHandle) -> JobStatus:
        # The style is stored in the handle so that a job resumed after a restart polls the way it began.
        style = handle.extra.get("poll_style", self.poll_style)
        if style == "status":
            data = await self._poll_status(handle)
        elif style == "result":
            data = await self._poll_result(handle)
        else:
            raise ProviderProtocolError(self.name, f"unknown poll style {str(style)[:20]!r} in a handle")
        return self._parse_status(data)

    async def _poll_result(self, handle: RemoteHandle) -> dict[str, Any]:
        http = self._require_http()
        url = handle.result_url or f"{self.base_url}{SUBMIT_PATHS[Operation(handle.operation)]}-result"
        # A POST, but it only reads the job's state: safe to resend.
        response = await http.request("POST", url, json_body={"request_id": handle.remote_id},
                                      idempotent=True)
        return response.json_object()

    async def _poll_status(self, handle: RemoteHandle) -> dict[str, Any]:
        http = self._require_http()
        url = handle.status_url or f"{self.base_url}{STATUS_PATH}{quote(handle.remote_id, safe='')}"
        if self._status_method == "GET":
            response = await http.request("GET", url, idempotent=True, accept={405})
            if response.status != 405:
                return response.json_object()
            self._status_method = "POST"
        # The doc page's POST has no documented body [U]; the request id travels in the path.
        response = await http.request("POST", url, idempotent=True)
        return response.json_object()

    def _parse_status(self, data: dict[str, Any]) -> JobStatus:
        raw = data.get("status")
        if not isinstance(raw, str) or not raw.strip():
            raise ProviderProtocolError(self.name, "status answer lacks 'status'")
        status = raw.strip().upper()
        if status in PENDING_QUEUED:
            position = data.get("queue_position")
            ok = isinstance(position, int) and not isinstance(position, bool)
            return Queued(position=position if ok else None)
        if status in PENDING_RUNNING:
            return Running()
        if status in DONE:
            return self._succeeded(data)
        if status in FAILED:
            # Whether Pixazo bills a failed job is unknown: charged=None lets refunds assume it may have.
            return Failed(reason=self._reason(data, status), retryable=FAILED[status], charged=None,
                          code=_error_code(data) or status.lower())
        if status in CANCELLED:
            reason = self._reason(data, status) if _error_text(data) else "cancelled at pixazo"
            return Cancelled(reason=reason)
        raise ProviderProtocolError(self.name, f"unknown status {raw[:40]!r}")

    def _succeeded(self, data: dict[str, Any]) -> JobStatus:
        containers = [c for c in (data.get("output"), data) if isinstance(c, dict)]
        urls: list[str] = []
        for container in containers:
            urls.extend(_urls(container.get("media_url")))
            urls.extend(_urls(container.get("images")))
        # Only web URLs are downloadable; dict.fromkeys drops a URL given in both places but keeps order.
        urls = list(dict.fromkeys(u for u in urls if u.startswith(("https://", "http://"))))
        if not urls:
            return Failed(reason="the job completed without any image", charged=None, code="no_images")
        flags: list[Any] = next((c["has_nsfw_concepts"] for c in containers
                                 if isinstance(c.get("has_nsfw_concepts"), list)), [])
        outputs = tuple(OutputImage(url=url, nsfw=bool(flags[i]) if i < len(flags) else False)
                        for i, url in enumerate(urls))
        seed = next((c["seed"] for c in containers if "seed" in c), None)
        return Succeeded(outputs=outputs, seed=_int_or_none(seed))

    def _reason(self, data: dict[str, Any], status: str) -> str:
        reason = _error_text(data) or f"the job ended with status {status}"
        if self.http is not None:
            reason = self.http.redact(reason)
        return reason[:MAX_ERROR_TEXT]

    # --- health -----------------------------------------------------------------------------------------

    async def check_key(self) -> KeyCheck:
        # APIM checks the subscription key before the request reaches Pixazo, so asking for the status of a
        # request id that cannot exist is free: 401/403 means rejected, anything else (404, 405...) accepted.
        return await self._probe_key(f"{self.base_url}{STATUS_PATH}{NIL_REQUEST_ID}")

    # cancel: Pixazo documents no cancel endpoint, so the inherited "return False" stands.


def _urls(value: Any) -> list[str]:
    """Image URLs from `media_url` (a string or a list) or `images` (a list of {url} or of strings)."""
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    found: list[str] = []
    for item in items:
        url = item.get("url") if isinstance(item, dict) else item
        if isinstance(url, str) and url.strip():
            found.append(url.strip())
    return found


def _error_text(data: dict[str, Any]) -> str:
    """The failure reason: `error.message`, `error` as a string, the same inside `output`, or `message`."""
    error = data.get("error")
    if isinstance(error, dict):
        for key in ("message", "detail", "msg"):
            if isinstance(error.get(key), str) and error[key].strip():
                return str(error[key]).strip()
    if isinstance(error, str) and error.strip():
        return error.strip()
    output = data.get("output")
    if isinstance(output, dict):
        inner = _error_text(output)
        if inner:
            return inner
    for key in ("message", "detail", "reason"):
        if isinstance(data.get(key), str) and data[key].strip():
            return str(data[key]).strip()
    return ""


def _error_code(data: dict[str, Any]) -> str | None:
    error = data.get("error")
    if isinstance(error, dict) and isinstance(error.get("code"), str | int) and str(error["code"]).strip():
        return str(error["code"]).strip()[:60]
    return None


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None
