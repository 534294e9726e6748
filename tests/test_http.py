"""The shared HTTP path, against a real local server: retries, Retry-After, classification, redaction."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import pytest
from aiohttp import web

from bot.errors import (
    MalformedResponseError,
    OutputError,
    ProviderAuthError,
    ProviderRejectedError,
    ProviderUnavailableError,
)
from bot.providers.http import HttpPolicy, ProviderHttp, parse_retry_after, provider_message
from tests.conftest import FAST_POLICY, png_bytes


class Script:
    """Answers queued per path; records every hit."""

    def __init__(self) -> None:
        self.answers: list[web.Response] = []
        self.hits: list[str] = []
        self.headers: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits.append(f"{request.method} {request.path}")
        self.headers.append(dict(request.headers))
        if self.answers:
            return self.answers.pop(0)
        return web.json_response({"ok": True})


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, Script]]:
    script = Script()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", script.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", script
    await runner.cleanup()


def client(session: aiohttp.ClientSession, policy: HttpPolicy = FAST_POLICY) -> ProviderHttp:
    return ProviderHttp(session, "acme", headers={"X-Key": "sk-live-SECRET"}, secrets=["sk-live-SECRET"],
                        policy=policy)


async def test_429_is_retried_even_on_a_submit_and_waits_as_told(
        session: aiohttp.ClientSession, server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [web.json_response({"detail": "slow down"}, status=429, headers={"Retry-After": "0.3"})]
    started = time.monotonic()
    response = await client(session).request("POST", f"{url}/submit", idempotent=False, json_body={})
    assert response.status == 200
    assert time.monotonic() - started >= 0.3
    assert script.hits == ["POST /submit", "POST /submit"]


async def test_a_retry_after_beyond_the_limit_fails_at_once(
        session: aiohttp.ClientSession, server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [web.json_response({}, status=429, headers={"Retry-After": "3600"})]
    with pytest.raises(ProviderUnavailableError, match="3600 s"):
        await client(session).request("GET", f"{url}/x", idempotent=True)
    assert len(script.hits) == 1


async def test_5xx_is_retried_on_polls_but_never_on_submits(
        session: aiohttp.ClientSession, server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [web.Response(status=503, text="busy"), web.Response(status=502, text="bad gateway")]
    assert (await client(session).request("GET", f"{url}/status", idempotent=True)).status == 200
    assert len(script.hits) == 3
    script.answers = [web.Response(status=500, text="boom")]
    with pytest.raises(ProviderUnavailableError, match="500"):
        await client(session).request("POST", f"{url}/submit", idempotent=False)
    assert script.hits.count("POST /submit") == 1


async def test_retries_stop_after_the_policy_attempts(
        session: aiohttp.ClientSession, server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [web.Response(status=503) for _ in range(10)]
    with pytest.raises(ProviderUnavailableError):
        await client(session).request("GET", f"{url}/status", idempotent=True)
    assert len(script.hits) == FAST_POLICY.max_attempts


async def test_auth_and_validation_errors_carry_the_providers_words_but_not_the_key(
        session: aiohttp.ClientSession, server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [web.json_response({"detail": "Invalid key sk-live-SECRET"}, status=401),
                      web.json_response({"detail": [{"loc": ["body", "prompt"], "msg": "field required"}]},
                                        status=422)]
    with pytest.raises(ProviderAuthError) as auth:
        await client(session).request("POST", f"{url}/a", idempotent=False)
    assert "acme" in str(auth.value) and "rejected the API key" in str(auth.value)
    assert "sk-live-SECRET" not in str(auth.value)
    with pytest.raises(ProviderRejectedError, match="prompt: field required"):
        await client(session).request("POST", f"{url}/b", idempotent=False)
    assert script.headers[0]["X-Key"] == "sk-live-SECRET"


async def test_timeouts_are_retried_on_polls_only(session: aiohttp.ClientSession) -> None:
    hits: list[str] = []

    async def slow(request: web.Request) -> web.Response:
        import asyncio
        hits.append(request.method)
        await asyncio.sleep(1)
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    # Well under the handler's second, yet long enough that a busy machine still gets each attempt to the server.
    policy = HttpPolicy(timeout_s=0.4, max_attempts=2, backoff_base_s=0.01)
    try:
        with pytest.raises(ProviderUnavailableError, match="timed out"):
            await client(session, policy).request("POST", f"http://127.0.0.1:{port}/submit", idempotent=False)
        assert hits == ["POST"]  # it may have started a paid job: never sent again
        with pytest.raises(ProviderUnavailableError, match="timed out"):
            await client(session, policy).request("GET", f"http://127.0.0.1:{port}/status", idempotent=True)
        assert hits == ["POST", "GET", "GET"]
    finally:
        await runner.cleanup()


async def test_a_refused_connection_is_retried_even_for_a_submit(session: aiohttp.ClientSession) -> None:
    # Nothing listens on this port: the request surely never arrived, so resending is safe.
    http = client(session)
    with pytest.raises(ProviderUnavailableError, match="cannot connect") as info:
        await http.request("POST", "http://127.0.0.1:9/submit", idempotent=False)
    assert http.request_count == FAST_POLICY.max_attempts
    assert info.value.sent is False  # and the runner may therefore offer the job to the next provider


async def test_malformed_json_is_its_own_error(session: aiohttp.ClientSession, server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [web.Response(status=200, text='{"status": "IN_', content_type="application/json")]
    response = await client(session).request("GET", f"{url}/s", idempotent=True)
    with pytest.raises(MalformedResponseError):
        response.json_object()


async def test_downloads_are_capped_and_expired_urls_are_explained(
        session: aiohttp.ClientSession, server: tuple[str, Script]) -> None:
    url, script = server
    big = png_bytes(400, 400)
    script.answers = [web.Response(body=big), web.Response(status=403, text="expired")]
    with pytest.raises(OutputError, match="larger than"):
        await client(session).download(f"{url}/out.png", max_bytes=len(big) - 1)
    with pytest.raises(OutputError, match="expired"):
        await client(session).download(f"{url}/out.png", max_bytes=10_000_000)
    # Pre-signed output URLs never receive the provider key.
    assert all("X-Key" not in h for h in script.headers)


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_provider_messages_from_every_known_shape() -> None:
    assert provider_message(b'{"detail": "Unauthorized"}') == "Unauthorized"
    assert provider_message(b'{"error": {"code": "X", "message": "bad image"}}') == "bad image"
    assert provider_message(b'{"code": 400, "reason": "INVALID", "message": "size too big"}') == "size too big"
    assert provider_message(b'{"statusCode": 401, "message": "Access denied"}') == "Access denied"
    assert provider_message(b"<html>oops</html>") == "<html>oops</html>"
