"""A strict fake of Pixazo's APIM gateway for GLM Image (../shared/docs/providers.md §4, §6).

Strict where the adapter could go wrong: the subscription-key header (APIM-style 401 bodies), the paths, the
JSON body against fal's glm-image input schema (which Pixazo's body mirrors; unknown fields are refused so
that a typo in the adapter cannot pass silently), and the request id in result polls. Both polling styles are
served: the model-specific `POST …-request-result {"request_id"}` and the generic `/v2/requests/status/{id}`
by GET and POST. Jobs walk QUEUED -> PROCESSING -> COMPLETED | FAILED | ERROR, driven by polls.

Knobs (besides those of FakeServer):
- `give_polling_url`: include `polling_url` in submit answers (the real gateway "often" does).
- `status_post_only`: the generic status endpoint answers GET with 405, as the doc page's POST suggests.
- `media_url_as_string`: `output.media_url` is the first URL as a string instead of a list.
- `fail_status`: FAILED or ERROR for jobs whose script outcome is "fail"; `fail_code` goes in `error.code`.
- `lowercase_status`: statuses in lower case (the real casing is only documented in upper case).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeJob, FakeServer, json_response

T2I = "/glm-image/v1/glm-image-request"
I2I = "/glm-image-image-to-image/v1/glm-image-image-to-image-request"
STATUS = "/v2/requests/status/{request_id}"

MISSING_KEY = ("Access denied due to missing subscription key. Make sure to include subscription key when "
               "making requests to an API.")
INVALID_KEY = ("Access denied due to invalid subscription key. Make sure to provide a valid key for an "
               "active subscription.")
RATE_LIMITED = {"statusCode": 429, "message": "Rate limit is exceeded. Try again in 1 seconds."}

SIZE_PRESETS = {"square_hd", "square", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9"}
COMMON_FIELDS = {"prompt", "image_size", "num_inference_steps", "guidance_scale", "seed", "num_images",
                 "enable_safety_checker", "output_format", "sync_mode", "enable_prompt_expansion"}
I2I_FIELDS = COMMON_FIELDS | {"image_urls"}
MIN_SIDE, MAX_SIDE, MULTIPLE = 256, 2048, 32
MAX_IMAGE_URLS = 4
_DATA_URI = re.compile(r"^data:image/(png|jpeg|webp|gif);base64,(.+)$", re.DOTALL)


class InvalidInput(Exception):
    """A body that fal's glm-image schema would refuse; becomes a 400 InvalidInput answer."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class FakePixazo(FakeServer):
    name = "pixazo"

    def __init__(self, *, key: str = "pixazo-test-key-0123456789") -> None:
        super().__init__(key=key)
        self.give_polling_url = True
        self.status_post_only = False
        self.media_url_as_string = False
        self.fail_status = "FAILED"
        self.fail_code = "GenerationFailed"
        self.lowercase_status = False

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post(T2I, self._submit_t2i)
        router.add_post(I2I, self._submit_i2i)
        router.add_post(f"{T2I}-result", self._result_t2i)
        router.add_post(f"{I2I}-result", self._result_i2i)
        router.add_get(STATUS, self._status)
        router.add_post(STATUS, self._status)

    # --- auth and errors ----------------------------------------------------------------------------------

    def _auth_error(self, request: web.Request) -> web.Response | None:
        """APIM answers before the API sees the request: the gateway's own body shape, not Pixazo's."""
        given = request.headers.get("Ocp-Apim-Subscription-Key")
        if given is None:
            return json_response({"statusCode": 401, "message": MISSING_KEY}, 401)
        if given != self.key:
            return json_response({"statusCode": 401, "message": INVALID_KEY}, 401)
        return None

    @staticmethod
    def _error(status: int, code: str, message: str) -> web.Response:
        return json_response({"error": {"code": code, "message": message}}, status)

    async def _json_body(self, request: web.Request) -> Any:
        if request.content_type != "application/json":
            raise InvalidInput(f"Content-Type must be application/json, not {request.content_type!r}")
        try:
            return json.loads(await request.read())
        except ValueError as exc:
            raise InvalidInput("The request body is not valid JSON") from exc

    # --- submit -------------------------------------------------------------------------------------------

    async def _submit_t2i(self, request: web.Request) -> web.StreamResponse:
        return await self._submit(request, "imagine", COMMON_FIELDS)

    async def _submit_i2i(self, request: web.Request) -> web.StreamResponse:
        return await self._submit(request, "edit", I2I_FIELDS)

    async def _submit(self, request: web.Request, operation: str, allowed: set[str]) -> web.StreamResponse:
        if (denied := self._auth_error(request)) is not None:
            return denied
        try:
            body = await self._json_body(request)
            self._validate(body, allowed, image_to_image=operation == "edit")
        except InvalidInput as exc:
            return self._error(400, "InvalidInput", str(exc))
        job = self.new_job(operation, body, count=body.get("num_images", 1))
        answer: dict[str, Any] = {"request_id": job.id}
        if self.give_polling_url:
            answer["polling_url"] = f"{self.base_url}{STATUS.format(request_id=job.id)}"
        return json_response(answer)

    def _validate(self, body: Any, allowed: set[str], *, image_to_image: bool) -> None:
        if not isinstance(body, dict):
            raise InvalidInput("The request body must be a JSON object")
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise InvalidInput(f"Unknown field(s): {', '.join(unknown)}")
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidInput("prompt is required")
        count = body.get("num_images", 1)
        if not _is_int(count) or not 1 <= count <= 4:
            raise InvalidInput("num_images must be an integer from 1 to 4")
        if "image_size" in body:
            self._validate_size(body["image_size"])
        steps = body.get("num_inference_steps", 30)
        if not _is_int(steps) or not 10 <= steps <= 100:
            raise InvalidInput("num_inference_steps must be an integer from 10 to 100")
        guidance = body.get("guidance_scale", 1.5)
        if not _is_number(guidance) or not 1 <= guidance <= 10:
            raise InvalidInput("guidance_scale must be a number from 1 to 10")
        if body.get("output_format", "jpeg") not in ("jpeg", "png"):
            raise InvalidInput("output_format must be jpeg or png")
        if "seed" in body and not _is_int(body["seed"]):
            raise InvalidInput("seed must be an integer")
        for flag in ("enable_safety_checker", "sync_mode", "enable_prompt_expansion"):
            if flag in body and not isinstance(body[flag], bool):
                raise InvalidInput(f"{flag} must be a boolean")
        if image_to_image:
            self._validate_image_urls(body.get("image_urls"))

    @staticmethod
    def _validate_size(size: Any) -> None:
        if isinstance(size, str):
            if size not in SIZE_PRESETS:
                raise InvalidInput(f"image_size must be one of {', '.join(sorted(SIZE_PRESETS))}")
            return
        if not isinstance(size, dict) or set(size) != {"width", "height"}:
            raise InvalidInput("image_size must be a preset name or {width, height}")
        for side in ("width", "height"):
            value = size[side]
            if not _is_int(value) or not MIN_SIDE <= value <= MAX_SIDE or value % MULTIPLE:
                raise InvalidInput(
                    f"image_size.{side} must be {MIN_SIDE}-{MAX_SIDE} in multiples of {MULTIPLE}")

    @staticmethod
    def _validate_image_urls(urls: Any) -> None:
        # Whether the real gateway takes data URIs is unknown; this fake takes them, decoded, and web URLs.
        if not isinstance(urls, list) or not urls:
            raise InvalidInput("image_urls is required for image-to-image")
        if len(urls) > MAX_IMAGE_URLS:
            raise InvalidInput(f"image_urls takes at most {MAX_IMAGE_URLS} images")
        for url in urls:
            if not isinstance(url, str):
                raise InvalidInput("image_urls must be strings")
            if url.startswith(("https://", "http://")):
                continue
            match = _DATA_URI.match(url)
            if not match:
                raise InvalidInput("image_urls must be http(s) URLs or base64 image data URIs")
            try:
                base64.b64decode(match[2], validate=True)
            except binascii.Error as exc:
                raise InvalidInput("image_urls holds a data URI that is not valid base64") from exc

    # --- polling ------------------------------------------------------------------------------------------

    async def _result_t2i(self, request: web.Request) -> web.StreamResponse:
        return await self._result(request, "imagine")

    async def _result_i2i(self, request: web.Request) -> web.StreamResponse:
        return await self._result(request, "edit")

    async def _result(self, request: web.Request, operation: str) -> web.StreamResponse:
        if (denied := self._auth_error(request)) is not None:
            return denied
        try:
            body = await self._json_body(request)
        except InvalidInput as exc:
            return self._error(400, "InvalidInput", str(exc))
        if not isinstance(body, dict) or not isinstance(body.get("request_id"), str):
            return self._error(400, "InvalidInput", "request_id is required")
        job = self.jobs.get(body["request_id"])
        # A model's result endpoint knows only its own model's requests.
        if job is None or job.operation != operation:
            return self._error(404, "NotFound", "Request not found")
        return json_response(self._job_state(job))

    async def _status(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._auth_error(request)) is not None:
            return denied
        if request.method == "GET" and self.status_post_only:
            return json_response({"statusCode": 405, "message": "Method not allowed"}, 405,
                                 headers={"Allow": "POST"})
        job = self.jobs.get(request.match_info["request_id"])
        if job is None:
            return self._error(404, "NotFound", "Request not found")
        return json_response(self._job_state(job))

    def _job_state(self, job: FakeJob) -> dict[str, Any]:
        job.polls += 1
        phase = job.phase()
        state: dict[str, Any] = {"request_id": job.id, "output": None, "error": None}
        if phase == "queued":
            state["status"] = "QUEUED"
        elif phase == "running":
            state["status"] = "PROCESSING"
        elif phase == "done":
            urls = self.output_urls(job)
            state["status"] = "COMPLETED"
            state["output"] = {"media_url": urls[0] if self.media_url_as_string and urls else urls}
        elif phase == "failed":
            state["status"] = self.fail_status
            state["error"] = {"code": self.fail_code, "message": job.script.fail_reason}
        else:
            state["status"] = "CANCELLED"
        if self.lowercase_status:
            state["status"] = state["status"].lower()
        return state
