"""Shared machinery for the fake provider servers: an aiohttp app on 127.0.0.1, fault knobs, request log,
scripted job lifecycles and an output file host with expiring URLs.

Every fake is strict where the real API is documented and where the adapter could get something wrong
(paths, auth headers, body fields); faults are injected with knobs so that tests read like the scenario.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import itertools
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Fault:
    """Answer the next `times` matching requests with this response instead of the real one."""

    status: int
    body: Any = None  # dict/list -> JSON; str/bytes -> raw
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    method: str | None = None
    path_contains: str | None = None
    content_type: str = "application/json"

    def matches(self, request: web.Request) -> bool:
        if self.method and request.method != self.method:
            return False
        return not (self.path_contains and self.path_contains not in request.path)


@dataclass
class JobScript:
    """How a fake job evolves. Transitions are driven by polls (fast, deterministic tests) or by time."""

    queue_polls: int = 1  # status polls answered "queued" before running
    running_polls: int = 1  # then polls answered "running" before the terminal state
    duration_s: float | None = None  # if set, time-driven instead: queued for a third, then running
    outcome: str = "success"  # success | fail | never
    fail_reason: str = "The model could not process this input."
    images: int | None = None  # defaults to what was asked
    nsfw: bool = False
    queue_position: int = 2
    duration_range: tuple[float, float] | None = None  # each job draws its duration_s from this range
    # With a seed the draws repeat: the n-th job under this script gets the same duration on every run, so
    # several clients each submitting N jobs (one after another, each after a fresh script) see the same N.
    seed: int | None = None
    _durations: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._durations = random.Random(self.seed)


@dataclass
class FakeJob:
    id: str
    operation: str
    body: Any
    script: JobScript
    created: float = field(default_factory=time.monotonic)
    created_wall: float = field(default_factory=time.time)
    polls: int = 0
    cancelled: bool = False
    finished_at: float | None = None
    outputs: list[str] = field(default_factory=list)
    count: int = 1

    def phase(self) -> str:
        """queued | running | done | failed | cancelled (failure and 'never' come from the script)."""
        if self.cancelled:
            return "cancelled"
        s = self.script
        if s.duration_s is not None:
            age = time.monotonic() - self.created
            if age < s.duration_s / 3:
                phase = "queued"
            elif age < s.duration_s or s.outcome == "never":
                phase = "running"
            else:
                phase = "done"
        elif self.polls <= s.queue_polls:
            phase = "queued"
        elif self.polls <= s.queue_polls + s.running_polls or s.outcome == "never":
            phase = "running"
        else:
            phase = "done"
        if phase == "done" and s.outcome == "fail":
            return "failed"
        if phase == "done" and self.finished_at is None:
            self.finished_at = time.monotonic()
        return phase

    @property
    def done_wall(self) -> float | None:
        """When a time-driven job finished (or will), on the wall clock shared with other processes."""
        if self.script.duration_s is None or self.script.outcome == "never":
            return None
        return self.created_wall + self.script.duration_s

    def progress(self) -> int:
        s = self.script
        if s.duration_s:
            age = time.monotonic() - self.created
            return max(0, min(99, int(100 * (age - s.duration_s / 3) / (s.duration_s * 2 / 3))))
        done = self.polls - s.queue_polls
        return max(0, min(99, int(100 * done / max(1, s.running_polls + 1))))


def make_png(width: int = 96, height: int = 96, color: tuple[int, int, int] = (200, 40, 90)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(data).encode(), content_type="application/json", headers=headers or {}
    )


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)  # when it arrived, on this process's monotonic clock
    status: int | None = None  # what it was answered (None while it is still being handled)


class FakeServer:
    """Base for the provider fakes. Subclasses add routes in `routes()` and use the helpers below."""

    name = "fake"

    def __init__(self, *, key: str = "test-key") -> None:
        self.key = key
        self.faults: list[Fault] = []
        self.requests: list[RecordedRequest] = []
        self.jobs: dict[str, FakeJob] = {}
        self.script = JobScript()  # applied to each new job; tests change it
        self.scripts: list[JobScript] = []  # if non-empty, popped for each new job first
        self.latency_s = 0.0  # added to every response
        # Requests whose path contains one of these wait until `release` is set (a job stuck at the provider).
        self.hold_paths: list[str] = []
        self.release = asyncio.Event()
        self.malformed_next = 0  # answer this many requests with broken JSON
        self.expire_outputs = False  # output URLs answer 403 as if their signature expired
        self.output_color = (200, 40, 90)
        self.distinct_outputs = False  # tint each job's images differently, so results can be told apart
        self.output_image: bytes | None = None  # when set, every output file is these bytes (an odd image)
        # Another server (another host, for the bot) that holds this fake's output files and serves their URLs;
        # with redirect_outputs the URLs stay on this fake, which answers them with a 302 to that host.
        self.file_host: FakeServer | None = None
        self.redirect_outputs = False
        self._jobs_with_outputs = 0
        self.files: dict[str, bytes] = {}
        self.file_downloads = 0
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        self.app.router.add_get("/_files/{name}", self._serve_file)
        self.app.router.add_get("/_redirect/{name}", self._redirect_file)
        self.app.router.add_get("/_admin/stats", self._admin_stats)
        self.app.router.add_get("/_admin/jobs/{id}", self._admin_job)
        self.app.router.add_post("/_admin/script", self._admin_script)
        self.app.router.add_post("/_admin/fail_next", self._admin_fail_next)
        self.app.router.add_post("/_admin/hold", self._admin_hold)
        self.app.router.add_post("/_admin/release", self._admin_release)
        self.app.router.add_post("/_admin/knobs", self._admin_knobs)
        self.app.router.add_get("/_admin/requests", self._admin_requests)
        self.app.router.add_post("/_admin/clear_faults", self._admin_clear_faults)
        self.routes(self.app.router)
        self.app.router.add_route("*", "/{tail:.*}", self._unknown)

    # --- lifecycle ---------------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[union-attr]
        actual = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://{host}:{actual}"
        return self.base_url

    async def stop(self) -> None:
        self.release.set()  # let held requests finish, or shutdown waits for them
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def routes(self, router: web.UrlDispatcher) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    # --- knobs -----------------------------------------------------------------------------------------

    def fail_next(self, status: int, body: Any = None, *, times: int = 1, headers: dict[str, str] | None = None,
                  method: str | None = None, path_contains: str | None = None) -> None:
        self.faults.append(Fault(status=status, body=body, headers=headers or {}, times=times, method=method,
                                 path_contains=path_contains))

    def calls(self, method: str | None = None, path_contains: str = "") -> list[RecordedRequest]:
        return [r for r in self.requests
                if (method is None or r.method == method) and path_contains in r.path]

    # --- helpers for subclasses -----------------------------------------------------------------------------

    def new_id(self) -> str:
        return str(uuid.uuid4())

    def new_job(self, operation: str, body: Any, count: int = 1) -> FakeJob:
        script = self.scripts.pop(0) if self.scripts else self.script
        if script.duration_range is not None:
            script = dataclasses.replace(script, duration_s=script._durations.uniform(*script.duration_range))
        job = FakeJob(id=self.new_id(), operation=operation, body=body, script=script, count=count)
        self.jobs[job.id] = job
        return job

    def output_urls(self, job: FakeJob) -> list[str]:
        host = self.file_host or self
        if not job.outputs:
            n = job.script.images if job.script.images is not None else job.count
            tint = 0
            if self.distinct_outputs:
                self._jobs_with_outputs += 1
                tint = 37 * self._jobs_with_outputs  # 37 is prime to 256: 256 jobs in a row look different
            for i in range(n):
                name = f"{job.id}_{i}.png"
                color = ((self.output_color[0] + tint) % 256, (self.output_color[1] + 30 * i) % 256,
                         self.output_color[2])
                host.files[name] = self.output_image or make_png(64 + 8 * i, 64, color)
                job.outputs.append(name)
        if self.redirect_outputs:
            return [f"{self.base_url}/_redirect/{name}" for name in job.outputs]
        return [f"{host.base_url}/_files/{name}" for name in job.outputs]

    # --- middleware ----------------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request.read()
        recorded = RecordedRequest(method=request.method, path=request.path, query=dict(request.query),
                                   headers=dict(request.headers), body=body)
        self.requests.append(recorded)
        try:
            response = await self._answer(request, handler)
        except web.HTTPException as exc:
            recorded.status = exc.status
            raise
        recorded.status = response.status
        return response

    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """A request's answer: held, delayed or faulted as the knobs say, else the route's own."""
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if any(part in request.path for part in self.hold_paths):
            await self.release.wait()
        if request.path.startswith(("/_files/", "/_admin/")):
            return await handler(request)
        for fault in self.faults:
            if fault.times > 0 and fault.matches(request):
                fault.times -= 1
                if fault.times == 0:
                    self.faults.remove(fault)
                if isinstance(fault.body, dict | list):
                    return json_response(fault.body, fault.status, fault.headers)
                raw = fault.body.encode() if isinstance(fault.body, str) else (fault.body or b"")
                return web.Response(status=fault.status, body=raw, headers=fault.headers,
                                    content_type=fault.content_type)
        if self.malformed_next > 0:
            self.malformed_next -= 1
            return web.Response(status=200, body=b'{"status": "IN_PROG', content_type="application/json")
        return await handler(request)

    async def _serve_file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if self.expire_outputs:
            return web.Response(status=403, text="<Error><Code>AccessDenied</Code>Request has expired</Error>",
                                content_type="application/xml")
        if name not in self.files:
            return web.Response(status=404, text="not found")
        self.file_downloads += 1
        return web.Response(body=self.files[name], content_type="image/png")

    async def _redirect_file(self, request: web.Request) -> web.StreamResponse:
        host = self.file_host or self
        raise web.HTTPFound(f"{host.base_url}/_files/{request.match_info['name']}")

    async def _admin_stats(self, request: web.Request) -> web.Response:
        """For benchmarks running the fake in another process: requests made and when each job finished."""
        provider_requests = [r for r in self.requests if not r.path.startswith(("/_files/", "/_admin/"))]
        jobs = {job.id: {"created": job.created_wall, "done": job.done_wall, "polls": job.polls,
                         "operation": job.operation, "outputs": job.outputs}
                for job in self.jobs.values()}
        files = {name: hashlib.sha256(data).hexdigest() for name, data in self.files.items()}
        return json_response({"requests": len(provider_requests), "downloads": self.file_downloads,
                              "status_polls": sum(j.polls for j in self.jobs.values()), "jobs": jobs,
                              "files": files})

    async def _admin_job(self, request: web.Request) -> web.Response:
        """What one job was submitted with, for a test in another process that checks what the provider got."""
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return json_response({"detail": "no such job"}, 404)
        return json_response({"id": job.id, "operation": job.operation, "body": job.body})

    async def _admin_script(self, request: web.Request) -> web.Response:
        body = await request.json()
        if "duration_range" in body:
            body["duration_range"] = tuple(body["duration_range"])
        self.script = JobScript(**body)
        return json_response({"ok": True})

    async def _admin_fail_next(self, request: web.Request) -> web.Response:
        """fail_next over HTTP, for a fake in another process: {"status", "body", "times", "method", ...}."""
        body = await request.json()
        self.fail_next(body["status"], body.get("body"), times=body.get("times", 1), headers=body.get("headers"),
                       method=body.get("method"), path_contains=body.get("path_contains"))
        return json_response({"ok": True})

    async def _admin_hold(self, request: web.Request) -> web.Response:
        """Hold requests whose path contains one of {"paths": [...]} until /_admin/release."""
        self.hold_paths = list((await request.json())["paths"])
        self.release = asyncio.Event()
        return json_response({"ok": True})

    async def _admin_release(self, request: web.Request) -> web.Response:
        self.hold_paths = []
        self.release.set()
        return json_response({"ok": True})

    async def _admin_knobs(self, request: web.Request) -> web.Response:
        """Set plain knobs: {"latency_s": 0.5, "distinct_outputs": true, ...}; unknown names are refused."""
        body = await request.json()
        allowed = {"latency_s", "malformed_next", "expire_outputs", "distinct_outputs"}
        unknown = set(body) - allowed
        if unknown:
            return json_response({"detail": f"unknown knob(s) {sorted(unknown)}; known: {sorted(allowed)}"}, 400)
        for name, value in body.items():
            setattr(self, name, value)
        return json_response({"ok": True})

    async def _admin_requests(self, request: web.Request) -> web.Response:
        """The API requests received so far, oldest first, for a test in another process that checks what was
        sent and when: [{"method", "path", "query", "at", "status"}, ...]. `at` is this process's monotonic clock (only
        differences mean anything); `status` is what the fake answered. Output downloads and admin calls are
        left out."""
        return json_response([{"method": r.method, "path": r.path, "query": r.query, "at": r.at,
                               "status": r.status}
                              for r in self.requests if not r.path.startswith(("/_files/", "/_admin/"))])

    async def _admin_clear_faults(self, request: web.Request) -> web.Response:
        """Forget every fault not yet used up, so that one test's leftover faults never reach the next."""
        self.faults.clear()
        self.malformed_next = 0
        return json_response({"ok": True})

    async def _unknown(self, request: web.Request) -> web.StreamResponse:
        return json_response({"detail": f"fake {self.name}: no route {request.method} {request.path}"}, 404)
