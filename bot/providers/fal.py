"""fal.ai queue API for GLM Image: `fal-ai/glm-image` (imagine) and `fal-ai/glm-image/image-to-image` (edit).

Protocol notes (../shared/docs/providers.md §1): the status, result and cancel URLs come from the submit
response and are used verbatim when they are on the configured queue host (a URL naming another host would
receive the key, so it is rebuilt on the queue host the way fal_client's standalone calls build it);
status answers 202 while pending and 200 when COMPLETED; COMPLETED is terminal
but the outcome is known only from the result (a 422 with a `detail` list is a failure); there is no FAILED
status in practice, though an `error`/`error_type` may ride on COMPLETED.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar
from urllib.parse import quote

from bot.errors import ProviderProtocolError
from bot.operations import EditRequest, ImagineRequest, Operation, Request
from bot.providers.base import KeyCheck
from bot.providers.glm import GlmImageProvider
from bot.providers.http import CLIENT_ERRORS, message_in, provider_message, url_origin
from bot.providers.status import (
    Failed,
    JobStatus,
    OutputImage,
    Queued,
    RemoteHandle,
    Running,
    Succeeded,
)

log = logging.getLogger(__name__)

NIL_REQUEST_ID = "00000000-0000-0000-0000-000000000000"
# `{owner}/{app}` of both models: status, result and cancel paths drop the model's subpath (§1.2).
APP_ID = "fal-ai/glm-image"
MODELS = {Operation.IMAGINE: "fal-ai/glm-image", Operation.EDIT: "fal-ai/glm-image/image-to-image"}
# Infrastructure error types from fal's docs: not billed, and worth another try.
RETRYABLE_ERROR_TYPES = {
    "request_timeout", "startup_timeout", "runner_scheduling_failure", "runner_connection_timeout",
    "runner_disconnected", "runner_connection_refused", "internal_error",
}


class FalProvider(GlmImageProvider):
    name = "fal"
    operations: ClassVar[frozenset[Operation]] = frozenset({Operation.EDIT, Operation.IMAGINE})
    typical_duration_s = 15.0

    def __init__(self, *args: Any, queue_url: str, webhook_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue_url = queue_url.rstrip("/")
        # When set, fal POSTs a signed result here as soon as the job ends (`?fal_webhook=`).
        self.webhook_url = webhook_url

    async def submit(self, request: Request) -> RemoteHandle:
        assert isinstance(request, EditRequest | ImagineRequest)
        http = self._require_http()
        model = MODELS[request.operation]
        params = {"fal_webhook": self.webhook_url} if self.webhook_url else None
        response = await http.request("POST", f"{self.queue_url}/{model}", json_body=self.payload(request),
                                      params=params, idempotent=False)
        data = response.json_object()
        try:
            request_id = str(data["request_id"])
            urls = {name: str(data[name]) for name in ("status_url", "response_url", "cancel_url")}
        except KeyError as exc:
            raise ProviderProtocolError(self.name, f"submit answer lacks {exc.args[0]!r}") from exc
        return RemoteHandle(
            provider=self.name, remote_id=request_id, operation=request.operation.value,
            status_url=self._on_queue_host(urls["status_url"], request_id, "/status"),
            result_url=self._on_queue_host(urls["response_url"], request_id, ""),
            cancel_url=self._on_queue_host(urls["cancel_url"], request_id, "/cancel"),
            extra={"queue_position": data.get("queue_position"), "webhook": self.webhook_url},
        )

    def _on_queue_host(self, url: str, request_id: str, suffix: str) -> str:
        """fal's URL if it is on the configured queue host; otherwise the same endpoint built on that host
        (`{queue}/{owner}/{app}/requests/{id}…`, as fal_client's standalone calls do), so the key stays there."""
        if url_origin(url) == url_origin(self.queue_url):
            return url
        log.warning("fal named another host (%s) for job %s; using the configured queue host instead",
                    url_origin(url)[1][:80], request_id)
        return f"{self.queue_url}/{APP_ID}/requests/{quote(request_id, safe='')}{suffix}"

    async def poll(self, handle: RemoteHandle) -> JobStatus:
        http = self._require_http()
        assert handle.status_url
        response = await http.request("GET", handle.status_url, params={"logs": "1"}, idempotent=True)
        data = response.json_object()
        status = data.get("status")
        if status == "IN_QUEUE":
            position = data.get("queue_position")
            return Queued(position=int(position) if isinstance(position, int | float) else None)
        if status == "IN_PROGRESS":
            logs = data.get("logs") or []
            message = logs[-1].get("message") if logs and isinstance(logs[-1], dict) else None
            return Running(message=message)
        if status == "COMPLETED":
            if data.get("error"):
                error_type = str(data.get("error_type") or "")
                return Failed(reason=str(data["error"]), retryable=error_type in RETRYABLE_ERROR_TYPES,
                              charged=False, code=error_type or None)
            return await self._result(handle)
        raise ProviderProtocolError(self.name, f"unknown status {str(status)[:40]!r}")

    async def _result(self, handle: RemoteHandle) -> JobStatus:
        http = self._require_http()
        assert handle.result_url
        # The result endpoint returns whatever the model returned, errors included: those are job failures.
        response = await http.request("GET", handle.result_url, idempotent=True, accept=CLIENT_ERRORS)
        if response.status >= 400:
            retryable = response.headers.get("X-Fal-Retryable", response.headers.get("X-Fal-Needs-Retry", ""))
            return Failed(reason=provider_message(response.body), retryable=retryable.lower() == "true",
                          charged=False, code=f"http_{response.status}")
        return self.outcome(response.json_object())

    def outcome(self, data: dict[str, Any]) -> Succeeded | Failed:
        """The model's output as a status: what the result endpoint answers, and a webhook's `payload`."""
        images = data.get("images")
        if not isinstance(images, list) or not images:
            return Failed(reason="the result held no images", charged=None, code="no_images")
        flags = data.get("has_nsfw_concepts") or []
        outputs = []
        for i, image in enumerate(images):
            if not isinstance(image, dict) or not isinstance(image.get("url"), str):
                raise ProviderProtocolError(self.name, "result image without a url")
            nsfw = bool(flags[i]) if i < len(flags) else False
            outputs.append(OutputImage(url=image["url"], nsfw=nsfw, mime=image.get("content_type")))
        seed = data.get("seed")
        return Succeeded(outputs=tuple(outputs), seed=int(seed) if isinstance(seed, int | str) and
                         str(seed).lstrip("-").isdigit() else None)

    def webhook_outcome(self, event: dict[str, Any]) -> tuple[str, Succeeded | Failed | None]:
        """A verified webhook call as (request id, outcome): `status` OK carries the output, ERROR the error.
        The outcome is None when fal could not serialise the output into the call (`payload_error`): the
        result endpoint has it."""
        request_id = event.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise ProviderProtocolError(self.name, "webhook call without a request_id")
        payload = event.get("payload")
        if event.get("status") == "OK":
            return request_id, self.outcome(payload) if isinstance(payload, dict) else None
        reason = message_in(payload) if payload else str(event.get("error") or "the job failed")
        return request_id, Failed(reason=reason, retryable=False, charged=False, code="webhook_error")

    async def cancel(self, handle: RemoteHandle) -> bool:
        if not handle.cancel_url:
            return False
        response = await self._require_http().request("PUT", handle.cancel_url, idempotent=True,
                                                      accept=CLIENT_ERRORS)
        return response.status < 300

    async def check_key(self) -> KeyCheck:
        # A status request for a request id that does not exist costs nothing: 401/403 means the key is
        # rejected, anything else (404) means fal accepted it.
        return await self._probe_key(f"{self.queue_url}/fal-ai/glm-image/requests/{NIL_REQUEST_ID}/status")
