"""The webhook listener on a real port of 127.0.0.1, probed with raw sockets: a caller that trickles its headers or
its body is cut off after the read timeout, connections over the cap are answered 503 and closed at once, and
a well-behaved call still gets through meanwhile."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.providers.registry import Providers
from bot.webhooks.fal_signature import FalSignatureVerifier
from bot.webhooks.hub import WebhookHub
from bot.webhooks.listener import WebhookListener

READ_TIMEOUT_S = 1.0


@pytest.fixture
async def listener() -> AsyncIterator[WebhookListener]:
    async with aiohttp.ClientSession() as session:
        hub = WebhookHub()
        server = WebhookListener(hub, Providers({}), FalSignatureVerifier(session, "http://127.0.0.1:9/jwks"),
                                 read_timeout_s=READ_TIMEOUT_S, max_connections=5)
        await server.start("127.0.0.1", 0)
        yield server
        await server.stop()


async def open_conn(listener: WebhookListener) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert listener.port is not None
    return await asyncio.open_connection("127.0.0.1", listener.port)


async def closed_after(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, trickle: bytes,
                       limit_s: float) -> tuple[float, bytes]:
    """Send `trickle` one byte every 0.1 s until the server closes; (seconds until closed, what it answered)."""
    started = time.monotonic()
    answer = b""
    for byte in trickle:
        if reader.at_eof() or time.monotonic() - started > limit_s:
            break
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except (ConnectionError, OSError):
            break
        try:
            answer += await asyncio.wait_for(reader.read(1024), 0.1)
        except TimeoutError:
            continue
        if reader.at_eof():
            break
    if not reader.at_eof():
        answer += await asyncio.wait_for(reader.read(), max(0.1, limit_s - (time.monotonic() - started)))
    writer.close()
    return time.monotonic() - started, answer


async def test_trickled_headers_are_cut_off_after_the_read_timeout(listener: WebhookListener) -> None:
    reader, writer = await open_conn(listener)
    headers = b"POST /webhooks/novita HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200
    took, answer = await closed_after(reader, writer, headers, limit_s=5 * READ_TIMEOUT_S)
    assert took < 3 * READ_TIMEOUT_S, f"a slow header kept the connection for {took:.1f} s"
    assert b"200" not in answer


async def test_a_trickled_body_is_answered_408_and_closed(listener: WebhookListener) -> None:
    reader, writer = await open_conn(listener)
    writer.write(b"POST /webhooks/novita HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 500\r\n\r\n")
    took, answer = await closed_after(reader, writer, b"{" + b" " * 499, limit_s=5 * READ_TIMEOUT_S)
    assert took < 3 * READ_TIMEOUT_S
    assert answer.startswith(b"HTTP/1.1 408")
    assert listener.refused == 1


async def test_connections_over_the_cap_are_turned_away_and_a_good_call_gets_in_after(
        listener: WebhookListener) -> None:
    held = [await open_conn(listener) for _ in range(5)]
    await asyncio.sleep(0.1)
    extra_reader, extra_writer = await open_conn(listener)
    answer = await asyncio.wait_for(extra_reader.read(), 2)
    assert answer.startswith(b"HTTP/1.1 503") and b"Retry-After" in answer
    assert listener.turned_away == 1
    extra_writer.close()
    for _, writer in held:
        writer.close()
    # Once the slow ones are gone (closed by them or by the read timeout), a real call is served.
    assert listener.port is not None
    async with aiohttp.ClientSession() as session:
        for _ in range(50):
            async with session.get(f"http://127.0.0.1:{listener.port}/webhooks/health") as resp:
                if resp.status == 200:
                    assert json.loads(await resp.read())["ok"] is True
                    break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the health endpoint never answered 200")
