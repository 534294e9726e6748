"""The fake Discord's REST plumbing under /api/v10: every call is logged, the bot token checked, bodies (JSON or
multipart `payload_json` + `files[n]`) read once, rate limits counted per route bucket with the X-RateLimit headers
discord.py reads, and faults, 429s and holds injected where a test asks. Unknown routes are logged and answer 404, so
gaps show. The endpoints themselves are in endpoints.py.

The global limit is Discord's too: `global_per_second` bot-token requests in any one second (a sliding window),
whatever process sends them, interaction endpoints exempt; over it, the global 429 (`"global": true`), which
discord.py answers by holding every request of that client until Retry-After has passed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from tests.fakes.discord.control import FakeDiscord
    from tests.fakes.discord.threads import LoopThread

log = logging.getLogger(__name__)

API = "/api/v10"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_CONTENT = 2000
PAYLOAD = web.RequestKey("payload", object)  # the JSON body, or the multipart payload_json
FILES = web.RequestKey("files", list)  # the multipart files[n] parts, as UploadedFile
# Interaction endpoints, which Discord leaves out of the global limit: callbacks, and everything under an
# application's interaction token (follow-ups, @original).
INTERACTION_PATH = re.compile(r"^/(interactions/|webhooks/[^/]+/[^/]+)")


class ApiError(Exception):
    """An error answer in Discord's shape: {"message": ..., "code": ...}."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message = status, code, message


def unknown_message() -> ApiError:
    return ApiError(404, 10008, "Unknown Message")


def missing_permissions() -> ApiError:
    return ApiError(403, 50013, "Missing Permissions")


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # Exactly "application/json": discord.py compares the header with == (discord.md §1.2, pitfall 1).
    return web.Response(status=status, body=json.dumps(data).encode(),
                        headers={"Content-Type": "application/json", **(headers or {})})


def global_429(retry_after: float) -> web.Response:
    """Discord's answer to a bot over its global limit."""
    return json_response({"message": "You are being rate limited.", "retry_after": round(retry_after, 3),
                          "global": True, "code": 0}, 429,
                         {"X-RateLimit-Global": "true", "X-RateLimit-Scope": "global",
                          "Retry-After": str(max(1, math.ceil(retry_after)))})


@dataclass
class RestCall:
    """One request the bot made, as the fake saw it."""

    at: float
    method: str
    path: str
    route: str  # the route template without /api/v10, e.g. "/channels/{channel_id}/messages"
    query: dict[str, str]
    body: Any = None  # the JSON body, or the multipart payload_json
    files: list[tuple[str, int]] = field(default_factory=list)  # (filename, bytes) of uploaded files
    status: int = 0
    code: int | None = None  # Discord's error code when it was refused


@dataclass
class Fault:
    """Answer the next `times` matching calls with this instead (a 429 carries Discord's rate-limit headers)."""

    status: int
    body: dict[str, Any]
    times: int = 1
    method: str | None = None
    route: str | None = None  # a route template, e.g. "/channels/{channel_id}/messages"
    headers: dict[str, str] = field(default_factory=dict)
    after: bool = False  # Discord did the work and then failed to answer (a 5xx on the way back)

    def matches(self, method: str, route: str) -> bool:
        return (self.method is None or self.method == method) and (self.route is None or self.route == route)


@dataclass
class Hold:
    """Keep the next matching call waiting at "Discord" until released (then it takes effect as usual)."""

    method: str | None
    route: str | None
    path: str | None = None
    thread: LoopThread | None = None  # the fake's loop, where `released` is awaited
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    call: RestCall | None = None

    def matches(self, call: RestCall) -> bool:
        return (self.method is None or self.method == call.method) and \
            (self.route is None or self.route == call.route) and (self.path is None or self.path == call.path)

    def release(self) -> None:
        if self.thread is not None:
            self.thread.call_soon(self.released.set)
        else:
            self.released.set()


class GlobalWindow:
    """The bot token's requests in the last second, and the most any one second has seen."""

    def __init__(self) -> None:
        self.accepted: deque[float] = deque()  # what the limit counts: requests let through
        self.arrived: deque[float] = deque()  # what the peak counts: every request, refused ones too
        self.peak = 0

    def arrive(self, now: float, limit: int) -> float | None:
        """Count one request; None when it is within the limit, else the seconds until one more would be."""
        for window in (self.accepted, self.arrived):
            while window and window[0] <= now - 1.0:
                window.popleft()
        self.arrived.append(now)
        self.peak = max(self.peak, len(self.arrived))
        if len(self.accepted) >= limit:
            return self.accepted[-limit] + 1.0 - now
        self.accepted.append(now)
        return None


@dataclass
class Bucket:
    """One rate-limit bucket: `limit` calls per `window` seconds, per route and major parameter, as Discord counts."""

    limit: int
    window: float
    used: int = 0
    resets_at: float = 0.0

    def take(self, now: float) -> bool:
        if now >= self.resets_at:
            self.used, self.resets_at = 0, now + self.window
        self.used += 1
        return self.used <= self.limit

    def headers(self, now: float, name: str) -> dict[str, str]:
        after = max(0.0, self.resets_at - now)
        return {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(max(0, self.limit - self.used)),
                "X-RateLimit-Reset": f"{time.time() + after:.3f}", "X-RateLimit-Reset-After": f"{after:.3f}",
                "X-RateLimit-Bucket": name}


@dataclass
class UploadedFile:
    index: int
    filename: str
    data: bytes
    content_type: str | None


class Rest:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.faults: list[Fault] = []
        self.holds: list[Hold] = []
        self.calls: list[RestCall] = []
        self.unknown: list[str] = []
        # Rate limits per route template: (calls, seconds). Generous by default so that tests run at full speed;
        # tighten one to see the bot pace itself (e.g. Discord's "/channels/{channel_id}/messages": (5, 5.0)).
        self.default_limit: tuple[int, float] = (50, 1.0)
        self.rate_limited = 0  # calls answered 429 because the bot went over a limit
        self.limits: dict[str, tuple[int, float]] = {}
        self._buckets: dict[tuple[str, str, str], Bucket] = {}
        # Discord's global limit per bot token, across every process using it (interaction endpoints exempt).
        self.global_per_second = 50
        self.global_429s = 0
        self._global = GlobalWindow()

    @property
    def peak_per_second(self) -> int:
        """The most bot-token requests that arrived within any one second (refused ones included)."""
        return self._global.peak

    def global_requests(self) -> list[RestCall]:
        """The calls the global limit counts."""
        return [c for c in self.calls if not INTERACTION_PATH.match(c.path)]

    # --- routing -------------------------------------------------------------------------------------------

    def add_routes(self, router: web.UrlDispatcher, routes: list[tuple[str, str, Handler]]) -> None:
        for method, path, handler in routes:
            router.add_route(method, API + path, handler)
        router.add_route("*", API + "/{tail:.*}", self.unknown_route)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(API + "/"):
            return await handler(request)
        resource = request.match_info.route.resource
        route = resource.canonical.removeprefix(API) if resource is not None else request.path
        call = RestCall(at=time.monotonic(), method=request.method, path=request.path.removeprefix(API),
                        route=route, query=dict(request.query))
        self.calls.append(call)
        try:
            payload, files = await self._read_body(request)
            call.body, call.files = payload, [(f.filename, len(f.data)) for f in files]
            request[PAYLOAD], request[FILES] = payload, files
            if not route.startswith(("/interactions/", "/webhooks/")) and \
                    request.headers.get("Authorization") != f"Bot {self.fake.token}":
                raise ApiError(401, 0, "401: Unauthorized")
            if not INTERACTION_PATH.match(call.path):
                retry_after = self._global.arrive(call.at, self.global_per_second)
                if retry_after is not None:
                    self.global_429s += 1
                    call.status, call.code = 429, 0
                    response = global_429(retry_after)
                    response.headers.setdefault("Via", "1.1 google")
                    self.fake.changed()
                    return response
            hold = next((h for h in self.holds if h.call is None and h.matches(call)), None)
            if hold is not None:
                hold.call = call
                hold.reached.set()
                self.fake.changed()
                await hold.released.wait()  # the request has arrived; it completes even if the bot is gone
            fault = next((f for f in self.faults if f.times > 0 and f.matches(request.method, route)), None)
            if fault is not None:
                fault.times -= 1
                if fault.times == 0:
                    self.faults.remove(fault)  # in place: a test may be adding one from its thread
                if fault.after:
                    await handler(request)
                response: web.StreamResponse = json_response(fault.body, fault.status, fault.headers)
                call.code = fault.body.get("code")
            else:
                response = await self._limited(request, route, handler)
        except ApiError as exc:
            call.code = exc.code
            response = json_response({"message": exc.message, "code": exc.code}, exc.status)
        call.status = response.status
        # Every Discord API answer comes through Google's front end; discord.py treats a 429 without `Via`
        # as a Cloudflare ban.
        response.headers.setdefault("Via", "1.1 google")
        self.fake.changed()
        return response

    async def _limited(self, request: web.Request, route: str, handler: Handler) -> web.StreamResponse:
        """Count the call in its bucket; over the limit it gets Discord's 429, otherwise the headers it reads."""
        info = request.match_info
        major = info.get("channel_id") or info.get("guild_id") or info.get("token") or ""
        limit, window = self.limits.get(route, self.default_limit)
        key = (request.method, route, major)
        bucket = self._buckets.get(key)
        if bucket is None or (bucket.limit, bucket.window) != (limit, window):
            bucket = self._buckets[key] = Bucket(limit, window)
        now = time.monotonic()
        name = f"{abs(hash((request.method, route))):x}"
        if not bucket.take(now):
            after = bucket.resets_at - now
            self.rate_limited += 1
            return json_response({"message": "You are being rate limited.", "retry_after": round(after, 3),
                                  "global": False}, 429,
                                 {**bucket.headers(now, name), "Retry-After": str(max(1, round(after))),
                                  "X-RateLimit-Scope": "user"})
        response = await handler(request)
        response.headers.update(bucket.headers(now, name))
        return response

    async def _read_body(self, request: web.Request) -> tuple[Any, list[UploadedFile]]:
        if not request.body_exists:
            return None, []
        if request.content_type == "multipart/form-data":
            payload: Any = None
            files: list[UploadedFile] = []
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if part.name == "payload_json":  # type: ignore[union-attr]
                    payload = json.loads(await part.read())  # type: ignore[union-attr]
                elif part.name and part.name.startswith("files["):  # type: ignore[union-attr]
                    index = int(part.name[len("files["):-1])  # type: ignore[union-attr]
                    files.append(UploadedFile(index=index, filename=part.filename or f"file{index}",  # type: ignore[union-attr]
                                              data=bytes(await part.read()),  # type: ignore[union-attr]
                                              content_type=part.headers.get("Content-Type")))  # type: ignore[union-attr]
            return payload, files
        raw = await request.read()
        if request.content_type != "application/json":
            raise ApiError(400, 50109, "The request body contains invalid JSON.")
        try:
            return json.loads(raw) if raw else None, []
        except ValueError as exc:
            raise ApiError(400, 50109, "The request body contains invalid JSON.") from exc

    async def unknown_route(self, request: web.Request) -> web.StreamResponse:
        what = f"{request.method} {request.path_qs}"
        log.warning("fake discord: no route for %s", what)
        self.unknown.append(what)
        return json_response({"message": "404: Not Found", "code": 0}, 404)
