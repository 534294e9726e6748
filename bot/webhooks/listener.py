"""The HTTP endpoint providers call when a job ends (only when WEBHOOK_PUBLIC_URL is set).

    POST /webhooks/fal      fal's signed result; verified, then it completes the job directly
    POST /webhooks/novita   Novita's task result; unsigned, so only a hint: the job asks Novita itself
    GET  /webhooks/health   for a reverse proxy or load balancer

Handlers answer at once (providers time out after 5-15 s and retry): the work a call triggers happens in the
job's own poll loop.
"""

from __future__ import annotations

import json
import logging
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


class WebhookListener:
    def __init__(self, hub: WebhookHub, providers: Providers, verifier: FalSignatureVerifier) -> None:
        self.hub = hub
        self.providers = providers
        self.verifier = verifier
        self.refused = 0
        self._runner: web.AppRunner | None = None
        self.app = web.Application(client_max_size=MAX_BODY_BYTES)
        self.app.router.add_post("/webhooks/fal", self._fal)
        self.app.router.add_post("/webhooks/novita", self._novita)
        self.app.router.add_get("/webhooks/health", self._health)

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise ConfigError(f"The webhook listener cannot bind {host}:{port} ({exc.strerror or exc}): set "
                              "WEBHOOK_PORT to a free port, or WEBHOOK_PUBLIC_URL empty to poll instead.") from exc
        log.info("webhook listener on %s:%s", host, port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

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
        self.hub.notify("fal", request_id, outcome)
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
