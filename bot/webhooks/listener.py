"""The HTTP endpoint providers call when a job ends (only when WEBHOOK_PUBLIC_URL is set).

    POST /webhooks/fal      fal's signed result; verified, then it completes the job directly
    POST /webhooks/novita   Novita's task result; unsigned, so only a hint: the job asks Novita itself
    GET  /webhooks/health   for a reverse proxy or load balancer

Handlers answer at once (providers time out after 5-15 s and retry): the work a call triggers happens in the
job's own poll loop.

The port faces the internet, so a caller cannot hold the bot's resources: a connection must deliver its request
headers within `read_timeout_s` of connecting (aiohttp's keep-alive timer, which this aiohttp starts at connect
and which trickled bytes do not reset) and its body within `read_timeout_s` more; at most `max_connections` are
open at once, and one more is answered 503 and closed at once. Every connection serves one request.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bot.errors import ConfigError, ProviderProtocolError
from bot.providers.fal import FalProvider
from bot.providers.registry import Providers
from bot.webhooks.fal_signature import FalSignatureVerifier, WebhookRejected
from bot.webhooks.hub import WebhookHub

log = logging.getLogger(__name__)

# A result call carries image URLs, not images: a few kilobytes. Anything far bigger is not a provider.
MAX_BODY_BYTES = 1024 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TURN_AWAY = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Length: 0\r\n"
             b"Connection: close\r\n\r\n")


class _TurnAway(asyncio.Protocol):
    """A connection over the cap: told to come back later and closed, so it holds no descriptor."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(TURN_AWAY)
        transport.close()


class WebhookListener:
    def __init__(self, hub: WebhookHub, providers: Providers, verifier: FalSignatureVerifier, *,
                 read_timeout_s: float = 10.0, max_connections: int = 256) -> None:
        self.hub = hub
        self.providers = providers
        self.verifier = verifier
        self.read_timeout_s = read_timeout_s
        self.max_connections = max_connections
        self.refused = 0
        self.turned_away = 0
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self.app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._one_request])
        self.app.router.add_post("/webhooks/fal", self._fal)
        self.app.router.add_post("/webhooks/novita", self._novita)
        self.app.router.add_get("/webhooks/health", self._health)

    async def start(self, host: str, port: int) -> None:
        # keepalive_timeout: also the time a new connection has to send its request headers.
        # lingering_time=0: a body still trickling in after the answer is not waited for.
        self._runner = web.AppRunner(self.app, access_log=None, keepalive_timeout=self.read_timeout_s,
                                     lingering_time=0, shutdown_timeout=1.0)
        await self._runner.setup()
        try:
            # Served on a socket of our own rather than a TCPSite, so each connection can be counted and capped.
            self._server = await asyncio.get_running_loop().create_server(self._connection, host, port,
                                                                          reuse_address=True)
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            self._server = None
            raise ConfigError(f"The webhook listener cannot bind {host}:{port} ({exc.strerror or exc}): set "
                              "WEBHOOK_PORT to a free port, or WEBHOOK_PUBLIC_URL empty to poll instead.") from exc
        log.info("webhook listener on %s:%s (at most %d connections, %.0f s to send a request)", host, port,
                 self.max_connections, self.read_timeout_s)

    @property
    def port(self) -> int | None:
        """The port actually bound (WEBHOOK_PORT, or the one the system chose for 0)."""
        if self._server is None or not self._server.sockets:
            return None
        return int(self._server.sockets[0].getsockname()[1])

    def _connection(self) -> asyncio.BaseProtocol:
        assert self._runner is not None and self._runner.server is not None
        if len(self._runner.server.connections) >= self.max_connections:
            self.turned_away += 1
            if self.turned_away in (1, 10, 100) or self.turned_away % 1000 == 0:
                log.warning("webhook listener at its cap of %d connections: turned away %d so far",
                            self.max_connections, self.turned_away)
            return _TurnAway()
        return self._runner.server()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()  # no new connections; the open ones are closed by the cleanup below
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._server = None

    @web.middleware
    async def _one_request(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Headers are in; the body must follow within the read timeout. One request per connection, so the
        header deadline (from connect) always applies."""
        try:
            async with asyncio.timeout(self.read_timeout_s):
                await request.read()  # cached: the handler's own read() returns it at once
        except TimeoutError:
            provider = request.path.rsplit("/", 1)[-1]
            response: web.StreamResponse = self._refuse(provider, 408, "the request body was not sent in time")
        else:
            response = await handler(request)
        response.force_close()
        return response

    def _refuse(self, provider: str, status: int, reason: str) -> web.Response:
        self.refused += 1
        log.warning("refused a %s webhook call: %s", provider, reason)
        return web.json_response({"error": reason}, status=status)

    async def _fal(self, request: web.Request) -> web.Response:
        provider = self.providers.get("fal") if "fal" in self.providers else None
        if not isinstance(provider, FalProvider) or not provider.webhook_url:
            return web.json_response({"error": "fal is not configured here"}, status=404)
        body = await request.read()
        try:
            await self.verifier.verify(request.headers, body)
        except WebhookRejected as exc:
            return self._refuse("fal", 401, str(exc))
        event = _json_object(body)
        if event is None:
            return self._refuse("fal", 400, "body is not a JSON object")
        try:
            request_id, outcome = provider.webhook_outcome(event)
        except ProviderProtocolError as exc:
            return self._refuse("fal", 400, str(exc))
        # No outcome (signed, but the output did not fit in the call): the job looks the result up itself.
        self.hub.notify("fal", request_id, outcome, verified=True)
        return web.json_response({"ok": True})

    async def _novita(self, request: web.Request) -> web.Response:
        if "novita" not in self.providers:
            return web.json_response({"error": "novita is not configured here"}, status=404)
        event = _json_object(await request.read())
        payload = event.get("payload") if event else None
        task = payload.get("task") if isinstance(payload, dict) else None
        task_id = task.get("task_id") if isinstance(task, dict) else None
        if event is None or event.get("event_type") != "ASYNC_TASK_RESULT" or not isinstance(task_id, str):
            return self._refuse("novita", 400, "not an ASYNC_TASK_RESULT event with a task id")
        # Unsigned, so the body decides nothing: it only wakes the job, which asks Novita for the result.
        self.hub.notify("novita", task_id[:128])
        return web.json_response({"ok": True})

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "calls": self.hub.calls, "refused": self.refused})


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
