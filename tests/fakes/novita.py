"""A strict fake of Novita's image APIs (../shared/docs/providers.md §2, §6): GLM Image on the v3 async API,
and Seedream 5.0 lite, which answers synchronously (§2.6).

Seedream: `POST /v3/seedream-5.0-lite` checks the documented body (prompt; size as "2K", "3K" or WxH with
3,686,400-10,404,496 pixels and an aspect ratio within 1/16-16; 1-14 input images as http(s) URLs or base64,
bare or as a data URI; watermark; sequential_image_generation "disabled" | "auto" with
sequential_image_generation_options.max_images) and answers `{"images": [url, ...]}` in the same response.
With "auto" the model may return fewer than max_images: `seedream_counts` pins the next answers' counts, else
a seeded draw returns fewer with probability `fewer_rate`, so runs repeat. Choices where the docs say nothing
[U]: max_images is 1-15 and input images plus max_images at most 15 (other hosts of the model document that
[S]); an unknown field answers 400.

`retire_glm(status)` makes the GLM endpoint answer as retired (status 404, 410 or 400, Novita's error shape
with reason MODEL_RETIRED), as its real answer is unknown (§2.6 [U]).

Strict where the docs are clear or the adapter could go wrong: `Authorization: Bearer <key>`, a JSON content
type (the docs require it on the GET too), the documented body fields only, and the documented size rules.
Where the docs say nothing [U], the choices are:
- an unknown `task_id` answers 404 with the usual error body (reason `TASK_NOT_FOUND`);
- a wrong Content-Type, a bad field or an unknown field answer 400 with reason `INVALID_REQUEST_BODY`;
- `task_type` is `TXT_TO_IMG`, as in Novita's examples;
- a flagged image carries novita-client's `{"valid": true, "confidence": …}` as `nsfw_detection_result`.

Numbers vary in type as in Novita's own examples: `extra.seed` and `debug_info.*_ms` are numeric strings
(never "", which novita-client cannot parse), and `image_url_ttl` alternates between 3600 and "3600" unless
`ttl_as_string` pins it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import json
import logging
import random
import re
import time
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeJob, FakeServer, json_response
from tests.fakes.webhooks import SendsWebhooks

log = logging.getLogger(__name__)

SIZE = re.compile(r"^(\d+)x(\d+)$")
MIN_SIDE, MAX_SIDE, MULTIPLE, MAX_PIXELS = 1024, 2048, 32, 4_194_304
BODY_FIELDS = {"prompt", "size", "quality", "watermark_enabled", "extra"}
EXTRA_FIELDS = {"webhook"}
WEBHOOK_FIELDS = {"url", "test_mode"}
TERMINAL_STATUSES = ("TASK_STATUS_SUCCEED", "TASK_STATUS_FAILED")

GLM_PATH = "/v3/async/glm-image"
SEEDREAM_PATH = "/v3/seedream-5.0-lite"
SEEDREAM_FIELDS = {"prompt", "size", "image", "watermark", "optimize_prompt_options", "sequential_image_generation",
                   "sequential_image_generation_options"}
SEEDREAM_MIN_PIXELS, SEEDREAM_MAX_PIXELS, SEEDREAM_MAX_ASPECT = 3_686_400, 10_404_496, 16
SEEDREAM_MAX_INPUTS, SEEDREAM_MAX_IMAGES = 14, 15
_DATA_URI = re.compile(r"^data:image/(jpeg|jpg|png|webp|bmp|tiff|gif);base64,(.+)$", re.DOTALL)


def error_body(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"code": code, "reason": reason, "message": message, "metadata": {}}


def error_response(code: int, reason: str, message: str) -> web.Response:
    return json_response(error_body(code, reason, message), code)


class BadRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class FakeNovita(SendsWebhooks, FakeServer):
    name = "novita"

    def __init__(self, *, key: str = "test-key") -> None:
        super().__init__(key=key)
        self.ttl_as_string: bool | None = None  # None alternates int/str from one finished task to the next
        self.unknown_next = 0  # answer this many polls with TASK_STATUS_UNKNOWN (the job does not move)
        self.seed = 158881667
        # Webhooks: Novita times out after 5 s and retries up to 5 times.
        self.init_webhooks()
        self.webhooks: dict[str, dict[str, Any]] = {}  # job id -> the submitted `extra.webhook`
        self._ttl_flip = itertools.count()
        # Seedream: how many images the next answers carry (capped at max_images); else a seeded draw.
        self.seedream_counts: list[int] = []
        self.fewer_rate = 0.25
        self.fewer_seed = 11
        self._fewer = random.Random(self.fewer_seed)
        self.call_s = 0.0  # how long a Seedream call takes before it answers
        self.seedream_garbled = False  # answer a call with a 200 that is not the documented JSON
        self.glm_retired: int | None = None  # the status the GLM endpoint answers when retired

    def retire_glm(self, status: int = 410) -> None:
        self.glm_retired = status

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post(GLM_PATH, self._submit)
        router.add_post(SEEDREAM_PATH, self._seedream)
        router.add_get("/v3/async/task-result", self._task_result)

    async def stop(self) -> None:
        await self.stop_webhooks()
        await super().stop()

    # --- request checks ------------------------------------------------------------------------------

    def _auth_error(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            return error_response(401, "INVALID_API_KEY", "Invalid API key, please check it and try again.")
        return None

    @staticmethod
    def _json_content_type(request: web.Request) -> bool:
        return request.headers.get("Content-Type", "").split(";")[0].strip().lower() == "application/json"

    @staticmethod
    def _check_fields_and_prompt(body: Any, fields: set[str]) -> None:
        """What every Novita model checks first: a JSON object of documented fields with a prompt."""
        if not isinstance(body, dict):
            raise BadRequest("request body must be a JSON object")
        unknown = set(body) - fields
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise BadRequest("prompt is required")

    @staticmethod
    def _check_body(body: Any) -> None:
        FakeNovita._check_fields_and_prompt(body, BODY_FIELDS)
        if "size" in body:
            FakeNovita._check_size(body["size"])
        if "quality" in body and body["quality"] != "hd":
            raise BadRequest("quality must be one of: hd")
        if "watermark_enabled" in body and not isinstance(body["watermark_enabled"], bool):
            raise BadRequest("watermark_enabled must be a boolean")
        if "extra" in body:
            FakeNovita._check_extra(body["extra"])

    @staticmethod
    def _check_size(size: Any) -> None:
        rule = (f"size must be WIDTHxHEIGHT with both sides {MIN_SIDE}-{MAX_SIDE}px, "
                f"multiples of {MULTIPLE}, at most {MAX_PIXELS} pixels")
        match = SIZE.match(size) if isinstance(size, str) else None
        if not match:
            raise BadRequest(rule)
        width, height = int(match[1]), int(match[2])
        if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
            raise BadRequest(rule)
        if width % MULTIPLE or height % MULTIPLE or width * height > MAX_PIXELS:
            raise BadRequest(rule)

    @staticmethod
    def _check_extra(extra: Any) -> None:
        if not isinstance(extra, dict) or set(extra) - EXTRA_FIELDS:
            raise BadRequest("extra may only hold webhook")
        webhook = extra.get("webhook")
        if webhook is None:
            return
        if not isinstance(webhook, dict) or set(webhook) - WEBHOOK_FIELDS:
            raise BadRequest("extra.webhook may only hold url and test_mode")
        url = webhook.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise BadRequest("extra.webhook.url must be an http(s) URL")
        test_mode = webhook.get("test_mode")
        if test_mode is not None and (
            not isinstance(test_mode, dict)
            or not isinstance(test_mode.get("enabled"), bool)
            or test_mode.get("return_task_status", TERMINAL_STATUSES[0]) not in TERMINAL_STATUSES
        ):
            raise BadRequest("extra.webhook.test_mode must be {enabled, return_task_status}")

    # --- routes ----------------------------------------------------------------------------------------

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._auth_error(request)) is not None:
            return denied
        if self.glm_retired is not None:
            return error_response(self.glm_retired, "MODEL_RETIRED",
                                  "GLM Image Generation has been retired; use Seedream 5.0 lite instead.")
        if not self._json_content_type(request):
            return error_response(400, "INVALID_REQUEST_BODY", "Content-Type must be application/json")
        try:
            body = json.loads(await request.read())
            self._check_body(body)
        except ValueError:
            return error_response(400, "INVALID_REQUEST_BODY", "request body is not valid JSON")
        except BadRequest as exc:
            return error_response(400, "INVALID_REQUEST_BODY", exc.message)
        job = self.new_job("imagine", body, count=1)  # glm-image makes one image per task
        webhook = (body.get("extra") or {}).get("webhook")
        if webhook:
            self.webhooks[job.id] = webhook
            self.track(self._deliver_when_done(job, webhook))
        return json_response({"task_id": job.id})

    async def _task_result(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._auth_error(request)) is not None:
            return denied
        if not self._json_content_type(request):
            return error_response(400, "INVALID_REQUEST_BODY", "Content-Type must be application/json")
        task_id = request.query.get("task_id", "")
        if not task_id:
            return error_response(400, "INVALID_REQUEST_BODY", "task_id is required")
        job = self.jobs.get(task_id)
        if job is None:
            return error_response(404, "TASK_NOT_FOUND", f"task {task_id[:64]} not found")
        if self.unknown_next > 0:
            self.unknown_next -= 1
            return json_response(self.result_body(job, status="TASK_STATUS_UNKNOWN"))
        job.polls += 1
        return json_response(self.result_body(job))

    # --- the task-result body --------------------------------------------------------------------------

    def task_status(self, job: FakeJob) -> str:
        return {
            "queued": "TASK_STATUS_QUEUED",
            "running": "TASK_STATUS_PROCESSING",
            "done": "TASK_STATUS_SUCCEED",
            "failed": "TASK_STATUS_FAILED",
        }[job.phase()]

    def _eta(self, job: FakeJob) -> int:
        s = job.script
        if s.duration_s is not None:
            return max(0, round(s.duration_s - (time.monotonic() - job.created)))
        return max(0, s.queue_polls + s.running_polls + 1 - job.polls)

    def result_body(self, job: FakeJob, *, status: str | None = None) -> dict[str, Any]:
        status = status or self.task_status(job)
        progress = {"TASK_STATUS_PROCESSING": job.progress(), "TASK_STATUS_SUCCEED": 100}.get(status, 0)
        pending = status in ("TASK_STATUS_QUEUED", "TASK_STATUS_PROCESSING")
        images: list[dict[str, Any]] = []
        if status == "TASK_STATUS_SUCCEED":
            as_string = self.ttl_as_string
            if as_string is None:
                as_string = next(self._ttl_flip) % 2 == 1
            flagged = {"valid": True, "confidence": 0.97} if job.script.nsfw else None
            images = [{"image_url": url, "image_url_ttl": "3600" if as_string else 3600, "image_type": "png",
                       "nsfw_detection_result": flagged} for url in self.output_urls(job)]
        submit_ms = int(job.created * 1000)
        return {
            "extra": {
                "seed": str(self.seed),
                "enable_nsfw_detection": False,
                "debug_info": {"request_info": "", "submit_time_ms": str(submit_ms),
                               "execute_time_ms": str(submit_ms + 5),
                               "complete_time_ms": str(submit_ms + 20) if not pending else "0"},
            },
            "task": {
                "task_id": job.id,
                "task_type": "TXT_TO_IMG",
                "status": status,
                "reason": job.script.fail_reason if status == "TASK_STATUS_FAILED" else "",
                "eta": self._eta(job) if pending else 0,
                "progress_percent": progress,
            },
            "images": images,
            "videos": [],
            "audios": [],
        }

    # --- webhooks ----------------------------------------------------------------------------------------

    async def _deliver_when_done(self, job: FakeJob, webhook: dict[str, Any]) -> None:
        test_mode = webhook.get("test_mode") or {}
        if test_mode.get("enabled"):
            # Test mode answers at once with the requested outcome; the real job is not run for it.
            status = test_mode.get("return_task_status", "TASK_STATUS_SUCCEED")
            await self._deliver(webhook["url"], self.result_body(job, status=status))
            return
        await self.until_ended(job, lambda j: self.task_status(j) in TERMINAL_STATUSES)
        await self._deliver(webhook["url"], self.result_body(job))

    async def _deliver(self, url: str, payload: dict[str, Any]) -> None:
        await self.post_event(url, {"event_type": "ASYNC_TASK_RESULT", "payload": payload})

    # --- Seedream 5.0 lite: one synchronous call -------------------------------------------------------------

    async def _seedream(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._auth_error(request)) is not None:
            return denied
        if not self._json_content_type(request):
            return error_response(400, "INVALID_REQUEST_BODY", "Content-Type must be application/json")
        try:
            body = json.loads(await request.read())
            max_images = self._check_seedream(body)
        except ValueError:
            return error_response(400, "INVALID_REQUEST_BODY", "request body is not valid JSON")
        except BadRequest as exc:
            return error_response(400, "INVALID_REQUEST_BODY", exc.message)
        count = max_images
        if self.seedream_counts:
            count = min(max_images, self.seedream_counts.pop(0))
        elif max_images > 1 and self._fewer.random() < self.fewer_rate:
            count = self._fewer.randint(1, max_images - 1)
        job = self.new_job("edit" if body.get("image") else "imagine", body, count=count)
        if self.call_s:
            await asyncio.sleep(self.call_s)
        if self.seedream_garbled:
            # The generation ran (and would be billed), but the answer is not the documented shape.
            return web.Response(status=200, text="<html>upstream error</html>", content_type="text/html")
        return json_response({"images": self.output_urls(job)})

    @staticmethod
    def _check_seedream(body: Any) -> int:
        """Check the body as documented; the number of images asked for."""
        FakeNovita._check_fields_and_prompt(body, SEEDREAM_FIELDS)
        if "size" in body:
            FakeNovita._check_seedream_size(body["size"])
        images = body.get("image")
        inputs = 0
        if images is not None:
            if not isinstance(images, list) or not 1 <= len(images) <= SEEDREAM_MAX_INPUTS:
                raise BadRequest(f"image must be a list of 1 to {SEEDREAM_MAX_INPUTS} images")
            for image in images:
                FakeNovita._check_input_image(image)
            inputs = len(images)
        if "watermark" in body and not isinstance(body["watermark"], bool):
            raise BadRequest("watermark must be a boolean")
        mode = body.get("sequential_image_generation", "disabled")
        if mode not in ("disabled", "auto"):
            raise BadRequest("sequential_image_generation must be one of: disabled, auto")
        options = body.get("sequential_image_generation_options")
        if options is not None and (not isinstance(options, dict) or set(options) - {"max_images"}):
            raise BadRequest("sequential_image_generation_options may only hold max_images")
        if mode == "disabled":
            return 1
        max_images = (options or {}).get("max_images", SEEDREAM_MAX_IMAGES)
        if not isinstance(max_images, int) or isinstance(max_images, bool) or not 1 <= max_images <= 15:
            raise BadRequest("sequential_image_generation_options.max_images must be an integer from 1 to 15")
        if inputs + max_images > SEEDREAM_MAX_IMAGES:
            raise BadRequest("input images plus max_images must not exceed 15")
        return max_images

    @staticmethod
    def _check_seedream_size(size: Any) -> None:
        if size in ("2K", "3K"):
            return
        rule = (f"size must be 2K, 3K or WIDTHxHEIGHT with {SEEDREAM_MIN_PIXELS}-{SEEDREAM_MAX_PIXELS} pixels "
                f"and an aspect ratio between 1/16 and 16")
        match = SIZE.match(size) if isinstance(size, str) else None
        if not match:
            raise BadRequest(rule)
        width, height = int(match[1]), int(match[2])
        if not SEEDREAM_MIN_PIXELS <= width * height <= SEEDREAM_MAX_PIXELS or height == 0 or \
                not 1 / SEEDREAM_MAX_ASPECT <= width / height <= SEEDREAM_MAX_ASPECT:
            raise BadRequest(rule)

    @staticmethod
    def _check_input_image(image: Any) -> None:
        if not isinstance(image, str) or not image:
            raise BadRequest("each image must be a URL or base64 string")
        if image.startswith(("http://", "https://")):
            return
        match = _DATA_URI.match(image)
        data = match[2] if match else image
        try:
            decoded = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("image is neither a URL nor valid base64") from None
        if not decoded:
            raise BadRequest("image is empty")
