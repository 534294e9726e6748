"""Where the bot sends its key and where it fetches outputs from, through the real `atelier` command and the
shared HTTP path. "Another host" is a second fake server on another port of 127.0.0.1: a private address that
is not the provider's configured host."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.errors import OutputError
from bot.providers.http import HttpPolicy, ProviderHttp
from tests.conftest import png_bytes
from tests.fakes.base import JobScript
from tests.fakes.fal import FakeFal
from tests.test_cli import atelier, clean_env

STRICT = HttpPolicy(timeout_s=5.0, download_timeout_s=5.0, max_attempts=2, backoff_base_s=0.01)


@pytest.fixture
async def fal() -> AsyncIterator[FakeFal]:
    server = FakeFal(key="urls-key")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def other() -> AsyncIterator[FakeFal]:
    """Another host: it would gladly take the key, and it serves files."""
    server = FakeFal(key="urls-key")
    await server.start()
    yield server
    await server.stop()


def env_for(fal: FakeFal, **extra: str) -> dict[str, str]:
    return clean_env(FAL_KEY=fal.key, FAL_QUEUE_URL=fal.base_url, **extra)


async def test_status_result_and_cancel_urls_on_another_host_never_get_the_key(
        tmp_path: Path, fal: FakeFal, other: FakeFal) -> None:
    fal.urls_base = other.base_url
    code, result, err = await atelier("job", "imagine", "--prompt", "x", cwd=tmp_path, env=env_for(fal))
    assert code == 0, (result, err)
    assert result is not None and result["state"] == "succeeded" and len(result["files"]) == 1
    assert other.requests == []  # not a single request, so certainly no Authorization header
    assert fal.calls("GET", "/status") and all(r.headers.get("Authorization") == f"Key {fal.key}"
                                               for r in fal.calls("GET", "/requests/"))


async def test_a_cancel_url_on_another_host_is_not_followed_either(
        tmp_path: Path, fal: FakeFal, other: FakeFal) -> None:
    fal.urls_base, fal.script = other.base_url, JobScript(outcome="never")
    code, result, _ = await atelier("job", "imagine", "--prompt", "x", cwd=tmp_path, env=env_for(fal),
                                    interrupt_when=lambda: bool(fal.calls("GET", "/status")))
    assert code == 130 and result is not None and result["state"] == "cancelled", result
    assert len(fal.calls("PUT", "/cancel")) == 1  # cancelled on the configured host
    assert other.requests == []


async def test_an_output_on_another_private_host_is_refused_unless_allowed(
        tmp_path: Path, fal: FakeFal, other: FakeFal) -> None:
    fal.file_host = other
    code, result, _ = await atelier("job", "imagine", "--prompt", "x", cwd=tmp_path, env=env_for(fal))
    assert code == 1 and result is not None and result["state"] == "failed"
    assert "private address" in result["error"] and "ALLOW_PRIVATE_OUTPUT_URLS" in result["error"]
    assert other.file_downloads == 0 and result["files"] == []

    code, result, _ = await atelier("job", "imagine", "--prompt", "y", cwd=tmp_path,
                                    env=env_for(fal, ALLOW_PRIVATE_OUTPUT_URLS="true"))
    assert code == 0 and result is not None and result["state"] == "succeeded", result
    assert other.file_downloads == 1


async def test_a_redirect_from_the_providers_host_to_a_private_address_is_refused(
        tmp_path: Path, fal: FakeFal, other: FakeFal) -> None:
    fal.file_host, fal.redirect_outputs = other, True
    code, result, _ = await atelier("job", "imagine", "--prompt", "x", cwd=tmp_path, env=env_for(fal))
    assert code == 1 and result is not None and "private address" in result["error"], result
    assert fal.calls("GET", "/_redirect/") and other.file_downloads == 0


@pytest.fixture
async def files() -> AsyncIterator[str]:
    """A file server with a redirect loop and a redirect to a non-http scheme."""
    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"/loop/{int(request.match_info['n']) + 1}")

    async def elsewhere(request: web.Request) -> web.Response:
        raise web.HTTPFound("file:///etc/passwd")

    async def image(request: web.Request) -> web.Response:
        return web.Response(body=png_bytes(), content_type="image/png")

    app = web.Application()
    app.router.add_get("/loop/{n}", loop)
    app.router.add_get("/elsewhere", elsewhere)
    app.router.add_get("/image.png", image)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.mark.parametrize(("url", "words"), [
    ("file:///etc/passwd", "not http"),
    ("ftp://example.org/x.png", "not http"),
    ("http://169.254.169.254/latest/meta-data", "private address"),  # a cloud metadata service: link-local
    ("http://[::1]:9/x.png", "private address"),
    ("http://localhost:9/x.png", "private address"),
    ("http://10.1.2.3/x.png", "private address"),
    # RFC 6598 shared address space (carrier-grade NAT, Tailscale's tailnet, Alibaba Cloud's metadata service):
    # not "private" to Python's ipaddress, and no more public than 10/8.
    ("http://100.100.100.200/latest/meta-data", "private address"),
    ("http://100.64.0.1/x.png", "private address"),
])
async def test_output_urls_are_checked_for_scheme_and_address_before_connecting(url: str, words: str) -> None:
    async with aiohttp.ClientSession() as session:
        http = ProviderHttp(session, "acme", policy=STRICT, base_url="https://api.acme.example")
        with pytest.raises(OutputError, match=words):
            await http.download(url, max_bytes=1_000_000)
        assert http.request_count == 0


async def test_redirects_are_followed_one_by_one_and_bounded(files: str) -> None:
    async with aiohttp.ClientSession() as session:
        home = ProviderHttp(session, "acme", policy=STRICT, base_url=files)  # the provider's own host: allowed
        assert await home.download(f"{files}/image.png", max_bytes=1_000_000) == png_bytes()
        with pytest.raises(OutputError, match="redirected more than 5 times"):
            await home.download(f"{files}/loop/0", max_bytes=1_000_000)
        with pytest.raises(OutputError, match="not http"):
            await home.download(f"{files}/elsewhere", max_bytes=1_000_000)


async def test_the_key_goes_only_to_the_configured_host(files: str) -> None:
    async with aiohttp.ClientSession() as session:
        http = ProviderHttp(session, "acme", headers={"X-Key": "k-123456789"}, policy=STRICT,
                            base_url="http://127.0.0.1:1")
        with pytest.raises(Exception, match="refused to send the API key"):
            await http.request("GET", f"{files}/image.png", idempotent=True)
        assert http.request_count == 0


async def _serve(host: str, port: int, body: bytes, seen: list[str]) -> web.AppRunner:
    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Host", ""))
        return web.Response(body=body, content_type="image/png")

    app = web.Application()
    app.router.add_get("/{name}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def test_a_name_that_resolves_elsewhere_when_connecting_is_fetched_from_the_address_that_was_checked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name's answer changes between the check and the connection. Here 127.0.0.2 stands for
    the public address the check approved, and 127.0.0.1 on the same port for a service of this machine that a
    second lookup would reach. Both are loopback: nothing leaves the machine."""
    import bot.providers.http as http_module

    public_seen: list[str] = []
    private_seen: list[str] = []
    private = await _serve("127.0.0.1", 0, b"secret of this machine", private_seen)
    port = private.addresses[0][1]
    public = await _serve("127.0.0.2", port, png_bytes(), public_seen)
    loop = asyncio.get_running_loop()
    real_getaddrinfo = loop.getaddrinfo
    answers = iter(["127.0.0.2"])

    async def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "files.rebind.test":
            return await real_getaddrinfo(host, *args, **kwargs)
        address = next(answers, "127.0.0.1")  # the first answer is approved; every later one is private
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(loop, "getaddrinfo", rebinding)
    monkeypatch.setattr(http_module, "_public", lambda address: str(address) == "127.0.0.2")
    try:
        async with aiohttp.ClientSession() as session:
            http = ProviderHttp(session, "acme", policy=STRICT, base_url="https://api.acme.example")
            data = await http.download(f"http://files.rebind.test:{port}/out.png", max_bytes=1_000_000)
    finally:
        await public.cleanup()
        await private.cleanup()
    assert data == png_bytes() and private_seen == []
    assert public_seen == [f"files.rebind.test:{port}"]  # the named host's request, at the checked address
