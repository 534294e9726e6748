"""A strict local fake of Glam AI's API (../shared/docs/providers.md §3), served under /api/v1.

Strict where the docs are clear or where an adapter could slip: the `X-API-Key` header, JSON bodies with the
documented field names and types, media given as http(s) URLs (never data: URIs, since Glam fetches them),
the upload's multipart field `file`, and separate job stores for /result and /tryon. Where the docs are silent
[U] the fake picks one answer and exposes the choice as a knob, so tests can try the others:

- `filters_envelope`: how GET /filters wraps its list ("list" = bare array, or an object key);
- `filter_name_key`: the key naming each filter ("name"; "filter_name" also seen [S]);
- `pending_media_urls`: what `media_urls` holds before READY (None or []);
- `fail_field`: where a FAILED body puts its reason (None: no reason at all);
- `upload_enabled`: False makes POST /upload answer 404 as a missing route would.

Error bodies follow FastAPI [I]: `{"detail": "..."}` from HTTPException, and 422
`{"detail": [{loc, msg, type}]}` for validation errors.
"""

from __future__ import annotations

import hmac
import io
import json
import uuid
from dataclasses import dataclass
from email.message import Message
from typing import Any

from aiohttp import web
from PIL import Image, UnidentifiedImageError

from tests.fakes.base import FakeServer, json_response

API = "/api/v1"
DEFAULT_FILTERS = ("real_sunset", "beetlejuice", "anime", "noir_film")
MASK_TYPES = ("overall", "upper", "lower")


@dataclass
class Upload:
    field: str  # the form field's name
    filename: str | None  # the file name the client sent
    content_type: str | None
    data: bytes
    stored: str = ""  # the file's name under /_files/ once accepted


def _missing(field: str) -> dict[str, Any]:
    return {"loc": ["body", field], "msg": "field required", "type": "value_error.missing"}


def _invalid(detail: list[dict[str, Any]]) -> web.Response:
    return json_response({"detail": detail}, 422)


def _header_params(value: str, header: str = "content-type") -> Message:
    """Parse a header with parameters (boundary=, name=, filename=) the way the stdlib mail parser does."""
    msg = Message()
    msg[header] = value
    return msg


class FakeGlam(FakeServer):
    name = "glam"

    def __init__(self, *, key: str = "test-key") -> None:
        self.filters: list[str] = list(DEFAULT_FILTERS)
        # Credits per filter as the catalogue lists them (generation_price); 1 for any not named.
        self.filter_credits: dict[str, int] = {}
        self.filters_envelope = "list"  # list | filters | data | items | results
        self.filter_name_key = "name"
        self.pending_media_urls: list[str] | None = []
        self.fail_field: str | None = "error"
        self.upload_enabled = True
        self.uploads: list[Upload] = []
        super().__init__(key=key)

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post(f"{API}/generate", self._generate)
        router.add_get(f"{API}/result/{{event_id}}", self._result)
        router.add_post(f"{API}/tryon", self._tryon)
        router.add_get(f"{API}/tryon/{{event_id}}", self._tryon_result)
        router.add_get(f"{API}/filters", self._filters)
        router.add_post(f"{API}/upload", self._upload)

    def new_id(self) -> str:
        # Documented ids look like "7f8d44f6-8cfc-4067-a6e0-42294a3cc41b-u1".
        return f"{uuid.uuid4()}-u1"

    # --- checks shared by the routes ------------------------------------------------------------------------

    def _auth(self, request: web.Request) -> web.Response | None:
        given = request.headers.get("X-API-Key")
        if given is None:
            # FastAPI's APIKeyHeader answers a missing header so [I]; `Authorization: Bearer` lands here.
            return json_response({"detail": "Not authenticated"}, 403)
        if not hmac.compare_digest(given.encode(), self.key.encode()):
            return json_response({"detail": "Invalid API key"}, 401)
        return None

    async def _json_body(
        self, request: web.Request, fields: tuple[str, ...]
    ) -> dict[str, Any] | web.Response:
        not_a_dict = {"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}
        if request.content_type != "application/json":
            return _invalid([not_a_dict])
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _invalid([{"loc": ["body", 0], "msg": "JSON decode error",
                              "type": "value_error.jsondecode"}])
        if not isinstance(body, dict):
            return _invalid([not_a_dict])
        errors = [_missing(f) for f in fields if f not in body]
        errors += [{"loc": ["body", f], "msg": "str type expected", "type": "type_error.str"}
                   for f in fields if f in body and not isinstance(body[f], str)]
        return _invalid(errors) if errors else body

    def _check_media(self, body: dict[str, Any], fields: tuple[str, ...]) -> web.Response | None:
        """Glam downloads what it is given: only http(s) URLs, and our own file URLs must exist."""
        errors = [{"loc": ["body", f], "msg": "invalid or missing URL scheme",
                   "type": "value_error.url.scheme"}
                  for f in fields if not body[f].startswith(("http://", "https://"))]
        if errors:
            return _invalid(errors)
        own = f"{self.base_url}/_files/"
        for f in fields:
            if body[f].startswith(own) and body[f].removeprefix(own) not in self.files:
                return json_response({"detail": f"Could not download {f}"}, 400)
        return None

    # --- submits --------------------------------------------------------------------------------------------

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._auth(request)) is not None:
            return denied
        body = await self._json_body(request, ("media_url", "filter_name"))
        if isinstance(body, web.Response):
            return body
        if (bad := self._check_media(body, ("media_url",))) is not None:
            return bad
        if body["filter_name"] not in self.filters:
            return json_response({"detail": f"Filter {body['filter_name']!r} not found"}, 400)
        job = self.new_job("filter", body)
        return json_response({"event_id": job.id})

    async def _tryon(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._auth(request)) is not None:
            return denied
        body = await self._json_body(request, ("media_url", "garment_url", "mask_type"))
        if isinstance(body, web.Response):
            return body
        if body["mask_type"] not in MASK_TYPES:
            return _invalid([{"loc": ["body", "mask_type"],
                              "msg": "value is not a valid enumeration member; "
                                     "permitted: 'overall', 'upper', 'lower'",
                              "type": "type_error.enum"}])
        if (bad := self._check_media(body, ("media_url", "garment_url"))) is not None:
            return bad
        job = self.new_job("tryon", body)
        return json_response({"event_id": job.id})

    # --- polls ----------------------------------------------------------------------------------------------

    async def _result(self, request: web.Request) -> web.StreamResponse:
        return self._poll(request, "filter")

    async def _tryon_result(self, request: web.Request) -> web.StreamResponse:
        return self._poll(request, "tryon")

    def _poll(self, request: web.Request, operation: str) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        job = self.jobs.get(request.match_info["event_id"])
        # Filter and try-on jobs are separate stores: polling the wrong endpoint finds nothing.
        if job is None or job.operation != operation:
            return json_response({"detail": "Event not found"}, 404)
        job.polls += 1
        phase = job.phase()
        pending = None if self.pending_media_urls is None else list(self.pending_media_urls)
        if phase == "queued":
            # IN_QUEUE is documented for try-on only; filter results go straight to IN_PROGRESS.
            status = "IN_QUEUE" if operation == "tryon" else "IN_PROGRESS"
            return json_response({"status": status, "media_urls": pending})
        if phase == "running":
            return json_response({"status": "IN_PROGRESS", "media_urls": pending})
        if phase in ("failed", "cancelled"):
            data: dict[str, Any] = {"status": "FAILED", "media_urls": pending}
            if self.fail_field:
                data[self.fail_field] = job.script.fail_reason
            return json_response(data)
        return json_response({"status": "READY", "media_urls": self.output_urls(job)})

    # --- catalogue and uploads ------------------------------------------------------------------------------

    async def _filters(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._auth(request)) is not None:
            return denied
        items = [{self.filter_name_key: name, "filter_id": i + 1,
                  "generation_price": self.filter_credits.get(name, 1),
                  "example_image": f"https://static.example.invalid/examples/{name}.jpg",
                  "example_video": None}
                 for i, name in enumerate(self.filters)]
        if self.filters_envelope == "list":
            return json_response(items)
        return json_response({self.filters_envelope: items, "total": len(items)})

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        if not self.upload_enabled:
            return json_response({"detail": "Not Found"}, 404)
        if (denied := self._auth(request)) is not None:
            return denied
        parts = self._multipart(request.headers.get("Content-Type", ""), await request.read())
        files = [p for p in parts if p.field == "file"]
        if len(files) != 1:
            return _invalid([_missing("file")])
        upload = files[0]
        if upload.filename is None:
            # FastAPI's UploadFile needs a file part, not a plain form field.
            return _invalid([{"loc": ["body", "file"], "msg": "Expected UploadFile", "type": "value_error"}])
        try:
            with Image.open(io.BytesIO(upload.data)) as img:
                fmt = (img.format or "bin").lower()
        except (UnidentifiedImageError, OSError):
            return json_response({"detail": "Unsupported file type"}, 400)
        upload.stored = f"upload-{uuid.uuid4().hex}.{fmt}"
        self.files[upload.stored] = upload.data
        self.uploads.append(upload)
        return json_response({"file_url": f"{self.base_url}/_files/{upload.stored}"})

    @staticmethod
    def _multipart(content_type: str, body: bytes) -> list[Upload]:
        """A strict multipart/form-data parser over the raw body (the middleware already read the stream)."""
        header = _header_params(content_type)
        boundary = header.get_param("boundary")
        if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
            return []
        delimiter = b"--" + boundary.encode()
        chunks = body.split(delimiter)
        # Preamble, parts..., then the closing "--" marker; anything else is a broken body.
        if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
            return []
        parts: list[Upload] = []
        for chunk in chunks[1:-1]:
            if not chunk.startswith(b"\r\n") or not chunk.endswith(b"\r\n"):
                return []
            head, sep, data = chunk[2:-2].partition(b"\r\n\r\n")
            if not sep:
                return []
            headers: dict[str, str] = {}
            for line in head.decode("utf-8", errors="replace").split("\r\n"):
                key, _, value = line.partition(":")
                headers[key.strip().lower()] = value.strip()
            disposition = _header_params(headers.get("content-disposition", ""), "content-disposition")
            name = disposition.get_param("name", header="content-disposition")
            filename = disposition.get_param("filename", header="content-disposition")
            parts.append(Upload(field=name if isinstance(name, str) else "",
                                filename=filename if isinstance(filename, str) else None,
                                content_type=headers.get("content-type"), data=data))
        return parts
