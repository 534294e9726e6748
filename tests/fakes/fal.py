"""A faithful fake of fal.ai's queue API for `fal-ai/glm-image` and `fal-ai/glm-image/image-to-image`.

Follows ../shared/docs/providers.md §1: submit returns request_id + status/response/cancel URLs on the fake's
own host; status/result/cancel paths drop the model's subpath; status answers 202 while pending and 200 once
COMPLETED, always with a `logs` key; invalid input is not refused at submit but surfaces as a 422 `detail`
list from the result; every queue response carries `x-fal-request-id`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import time
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from PIL import Image

from tests.fakes.base import FakeJob, FakeServer, json_response
from tests.fakes.webhooks import SendsWebhooks

APP = "fal-ai/glm-image"
PRESETS = {"square_hd", "square", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9"}
LOGS_VALUES = {"1": True, "true": True, "0": False, "false": False}


def validate_input(body: Any, image_to_image: bool) -> list[dict[str, Any]]:
    """The model's own validation, as fal reports it: a list of pydantic-style errors."""
    errors: list[dict[str, Any]] = []

    def err(field: str, msg: str, kind: str = "value_error") -> None:
        errors.append({"loc": ["body", field], "msg": msg, "type": kind})

    if not isinstance(body, dict):
        return [{"loc": ["body"], "msg": "Input should be an object", "type": "dict_type"}]
    if not isinstance(body.get("prompt"), str) or not body["prompt"].strip():
        err("prompt", "field required", "missing")
    size = body.get("image_size", "square_hd")
    if isinstance(size, str):
        if size not in PRESETS:
            err("image_size", f"unknown preset {size}", "enum")
    elif isinstance(size, dict):
        w, h = size.get("width"), size.get("height")
        if not (isinstance(w, int) and isinstance(h, int) and 256 <= w <= 2048 and 256 <= h <= 2048):
            err("image_size", "width and height must be integers from 256 to 2048")
    else:
        err("image_size", "must be a preset name or {width, height}")
    n = body.get("num_images", 1)
    if not isinstance(n, int) or not 1 <= n <= 4:
        err("num_images", "must be from 1 to 4")
    steps = body.get("num_inference_steps", 30)
    if not isinstance(steps, int) or not 10 <= steps <= 100:
        err("num_inference_steps", "must be from 10 to 100")
    g = body.get("guidance_scale", 1.5)
    if not isinstance(g, int | float) or not 1 <= g <= 10:
        err("guidance_scale", "must be from 1 to 10")
    if body.get("output_format", "jpeg") not in ("jpeg", "png"):
        err("output_format", "must be jpeg or png")
    if image_to_image:
        urls = body.get("image_urls")
        if not isinstance(urls, list) or not 1 <= len(urls) <= 4:
            err("image_urls", "between 1 and 4 image urls are required")
        else:
            for url in urls:
                if not _loadable(url):
                    errors.append({"loc": ["body", "image_urls"], "msg": "Failed to load the image",
                                   "type": "image_load_error"})
    return errors


def _loadable(url: Any) -> bool:
    if not isinstance(url, str) or not url.startswith("data:image/") or ";base64," not in url:
        return isinstance(url, str) and url.startswith(("http://", "https://"))
    try:
        raw = base64.b64decode(url.split(",", 1)[1], validate=True)
        with Image.open(io.BytesIO(raw)) as img:
            img.load()
    except (binascii.Error, OSError, ValueError):
        return False
    return True


class FakeFal(SendsWebhooks, FakeServer):
    name = "fal"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.infra_error: tuple[str, str] | None = None  # (error, error_type) on COMPLETED for new jobs
        # When set, the submit answer's status/response/cancel URLs name this base instead of the fake's own.
        self.urls_base: str | None = None
        # Webhooks (§1.6): signed with Ed25519; the public key is served as a JWKS like fal's.
        self.init_webhooks()
        self.signing_key = Ed25519PrivateKey.generate()
        self.user_id = "fake-user-1"
        self.jwks_fetches = 0
        # Requests a client has submitted and not yet finished with (its result read, or cancelled): what a
        # plan's parallel-job cap counts, however many client processes share the key.
        self.open_requests: set[str] = set()
        self.most_open = 0

    async def stop(self) -> None:
        await self.stop_webhooks()
        await super().stop()

    @property
    def jwks_url(self) -> str:
        return f"{self.base_url}/.well-known/jwks.json"

    def sign(self, request_id: str, body: bytes, *, key: Ed25519PrivateKey | None = None,
             timestamp: int | None = None) -> dict[str, str]:
        """The headers fal puts on a webhook call: Ed25519 over request id, user id, timestamp, body hash."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        message = f"{request_id}\n{self.user_id}\n{stamp}\n{hashlib.sha256(body).hexdigest()}".encode()
        signature = (key or self.signing_key).sign(message).hex()
        return {"X-Fal-Webhook-Request-Id": request_id, "X-Fal-Webhook-User-Id": self.user_id,
                "X-Fal-Webhook-Timestamp": stamp, "X-Fal-Webhook-Signature": signature}

    def jwks(self) -> dict[str, Any]:
        raw = self.signing_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "fake-1", "use": "sig", "alg": "EdDSA"}]}

    async def _jwks(self, request: web.Request) -> web.Response:
        self.jwks_fetches += 1
        return json_response(self.jwks())

    async def _call_back(self, job: FakeJob, url: str) -> None:
        await self.until_ended(job, lambda j: j.phase() in ("done", "failed", "cancelled"))
        if job.phase() == "cancelled":
            return
        status, data = self._outcome(job)
        event: dict[str, Any] = {"request_id": job.id, "gateway_request_id": job.id}
        if status == 200:
            event.update(status="OK", payload=data, error=None)
        else:
            event.update(status="ERROR", payload=data, error=f"Invalid status code: {status}")
        await self.post_event(url, event, sign=lambda body: self.sign(job.id, body))

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post(f"/{APP}", self._submit)
        router.add_post(f"/{APP}/image-to-image", self._submit)
        router.add_get(f"/{APP}/requests/{{id}}/status", self._status)
        router.add_get(f"/{APP}/requests/{{id}}", self._result)
        router.add_put(f"/{APP}/requests/{{id}}/cancel", self._cancel)
        router.add_get("/.well-known/jwks.json", self._jwks)

    def _auth(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Key {self.key}":
            return json_response({"detail": "Unauthorized"}, 401)
        return None

    def _headers(self, job_id: str) -> dict[str, str]:
        return {"x-fal-request-id": job_id}

    def _urls(self, job_id: str) -> dict[str, str]:
        base = f"{self.urls_base or self.base_url}/{APP}/requests/{job_id}"
        return {"response_url": base, "status_url": f"{base}/status", "cancel_url": f"{base}/cancel"}

    async def _submit(self, request: web.Request) -> web.Response:
        if denied := self._auth(request):
            return denied
        try:
            body = await request.json()
        except ValueError:
            return json_response({"detail": "Invalid JSON body"}, 400)
        count = body.get("num_images", 1) if isinstance(body, dict) else 1
        job = self.new_job(request.path.removeprefix("/"), body, count=count if isinstance(count, int) else 1)
        self.open_requests.add(job.id)
        self.most_open = max(self.most_open, len(self.open_requests))
        job.body = {"input": body, "errors": validate_input(body, request.path.endswith("image-to-image")),
                    "infra_error": self.infra_error, "webhook": request.query.get("fal_webhook")}
        if job.body["webhook"]:
            self.track(self._call_back(job, job.body["webhook"]))
        position = job.script.queue_position if job.script.queue_polls else 0
        return json_response({"status": "IN_QUEUE", "request_id": job.id, **self._urls(job.id),
                              "queue_position": position}, 200, self._headers(job.id))

    def _job(self, request: web.Request) -> FakeJob | None:
        return self.jobs.get(request.match_info["id"])

    async def _status(self, request: web.Request) -> web.Response:
        if denied := self._auth(request):
            return denied
        logs_arg = request.query.get("logs", "0").lower()
        if logs_arg not in LOGS_VALUES:
            return json_response({"detail": [{"loc": ["query", "logs"], "msg": "bad bool", "type": "bool"}]}, 422)
        job = self._job(request)
        if job is None:
            return json_response({"detail": "Request not found"}, 404)
        job.polls += 1
        with_logs = LOGS_VALUES[logs_arg]
        phase = job.phase()
        urls = {"response_url": self._urls(job.id)["response_url"]}
        if phase == "queued":
            position = max(0, job.script.queue_position - (job.polls - 1))
            return json_response({"status": "IN_QUEUE", "queue_position": position, **urls}, 202,
                                 self._headers(job.id))
        if phase == "running":
            logs = [{"message": f"step {job.progress()}%", "level": "INFO", "source": "USER",
                     "timestamp": "2026-01-01T00:00:00.000000"}] if with_logs else None
            return json_response({"status": "IN_PROGRESS", "logs": logs, **urls}, 202, self._headers(job.id))
        body: dict[str, Any] = {"status": "COMPLETED", "logs": [] if with_logs else None,
                                "metrics": {"inference_time": 1.23}, **urls}
        if phase == "cancelled":
            body["metrics"] = {}
        infra = job.body["infra_error"]
        if infra:
            body.update({"error": infra[0], "error_type": infra[1]})
        return json_response(body, 200, self._headers(job.id))

    async def _result(self, request: web.Request) -> web.Response:
        if denied := self._auth(request):
            return denied
        job = self._job(request)
        if job is None:
            return json_response({"detail": "Request not found"}, 404)
        phase = job.phase()
        headers = self._headers(job.id)
        if phase in ("queued", "running"):
            return json_response({"detail": "Request is still in progress"}, 400, headers)
        if phase == "cancelled":
            return json_response({"detail": "Request was cancelled"}, 400, headers)
        status, data = self._outcome(job)
        self.open_requests.discard(job.id)
        if status == 422 and job.body["errors"]:
            headers["X-Fal-Retryable"] = "false"
        if status == 504:
            headers["X-Fal-Error-Type"] = job.body["infra_error"][1]
        return json_response(data, status, headers)

    def _outcome(self, job: FakeJob) -> tuple[int, dict[str, Any]]:
        """What the result endpoint answers for an ended job (and what its webhook call carries)."""
        if job.body["errors"]:
            return 422, {"detail": job.body["errors"]}
        if job.phase() == "failed":
            return 422, {"detail": [{"loc": ["body"], "msg": job.script.fail_reason,
                                     "type": "content_policy_violation"}]}
        if job.body["infra_error"]:
            error, error_type = job.body["infra_error"]
            return 504, {"detail": error, "error_type": error_type}
        urls = self.output_urls(job)
        return 200, {
            "images": [{"url": u, "width": 64, "height": 64, "content_type": "image/png"} for u in urls],
            "timings": {"inference": 1.2},
            "seed": job.body["input"].get("seed", 1234567),
            "has_nsfw_concepts": [job.script.nsfw] * len(urls),
            "prompt": job.body["input"].get("prompt"),
        }

    async def _cancel(self, request: web.Request) -> web.Response:
        if denied := self._auth(request):
            return denied
        job = self._job(request)
        if job is None:
            return json_response({"status": "NOT_FOUND"}, 404)
        if job.phase() in ("done", "failed"):
            return json_response({"status": "ALREADY_COMPLETED"}, 400, self._headers(job.id))
        job.cancelled = True
        self.open_requests.discard(job.id)
        return json_response({"status": "CANCELLATION_REQUESTED"}, 202, self._headers(job.id))
