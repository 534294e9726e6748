"""The fake Discord's global limit is Discord's: so many bot-token requests in any one second, whatever sends them,
interaction endpoints exempt, answered over it with the global 429; and discord.py, given that answer, holds every
request of its client until Retry-After has passed (so a bot that hits it stalls everything, results included)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import discord
import pytest

from tests.fakes.discord import Channel, FakeDiscord


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def aimed(fake: FakeDiscord) -> Iterator[None]:
    """discord.py in this process aimed at the fake (its Route.BASE is global: put back afterwards)."""
    saved = discord.http.Route.BASE
    discord.http.Route.BASE = fake.api_base
    yield
    discord.http.Route.BASE = saved


async def a_channel(fake: FakeDiscord) -> Channel:
    guild = await fake.create_guild()
    return await guild.create_channel("limits")


async def test_over_the_limit_in_one_second_is_the_global_429(fake: FakeDiscord) -> None:
    channel = await a_channel(fake)
    fake.rest.global_per_second = 5
    bot = {"Authorization": f"Bot {fake.token}"}
    async with aiohttp.ClientSession() as http:
        async def get(path: str, headers: dict[str, str]) -> aiohttp.ClientResponse:
            async with http.get(f"{fake.api_base}{path}", headers=headers) as resp:
                await resp.read()
                return resp

        # Interaction endpoints do not count, before or after: a token that names no interaction is refused,
        # never rate limited.
        for _ in range(8):
            assert (await get(f"/webhooks/{fake.application_id}/nope/messages/@original", {})).status != 429
        started = time.monotonic()
        answers = [await get(f"/channels/{channel.id}", bot) for _ in range(6)]
        assert time.monotonic() - started < 1.0, "the machine is too slow for six requests in a second"
        assert [a.status for a in answers] == [200] * 5 + [429]
        over = answers[-1]
        async with http.get(f"{fake.api_base}/channels/{channel.id}", headers=bot) as resp:
            body = await resp.json()
            assert resp.status == 429
            assert resp.headers["X-RateLimit-Global"] == "true"
            assert resp.headers["X-RateLimit-Scope"] == "global"
            assert int(resp.headers["Retry-After"]) >= 1
            assert resp.headers["Via"]  # discord.py takes a 429 without Via for a Cloudflare ban
        assert body["message"] == "You are being rate limited." and body["global"] is True and body["code"] == 0
        assert 0 < body["retry_after"] <= 1.0
        assert over.headers["X-RateLimit-Global"] == "true"
        assert (await get(f"/webhooks/{fake.application_id}/nope/messages/@original", {})).status != 429
        assert fake.rest.global_429s == 2
        assert fake.rest.peak_per_second == 7  # the peak counts what was sent, refused or not

        await asyncio.sleep(body["retry_after"])  # the wait Discord asks for, then the window has room again
        assert (await get(f"/channels/{channel.id}", bot)).status == 200
        assert fake.rest.global_429s == 2


class GlobalHit(logging.Handler):
    """discord.py's warning that it hit the global limit, as an event, with the wait it took from the answer."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.hit = asyncio.Event()
        self.retry_after = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("Global rate limit has been hit"):
            assert isinstance(record.args, tuple)
            self.retry_after = float(record.args[0])  # type: ignore[arg-type]
            self.hit.set()


async def test_discord_py_holds_every_request_of_its_client_after_a_global_429(fake: FakeDiscord,
                                                                               aimed: None) -> None:
    channel = await a_channel(fake)
    other = await a_channel(fake)
    watch = GlobalHit()
    logging.getLogger("discord.http").addHandler(watch)
    http = discord.http.HTTPClient(asyncio.get_running_loop())
    await http.static_login(fake.token)
    try:
        fake.rest.global_per_second = 3
        gets = [asyncio.create_task(http.get_channel(channel.id)) for _ in range(5)]
        await watch.hit.wait()
        assert not http._global_over.is_set()  # the process-wide lock: nothing of this client goes now
        # Made while the lock is held, on another route and bucket: it waits all the same.
        later = asyncio.create_task(http.get_channel(other.id))
        answers = await asyncio.gather(*gets)
        assert all(a["id"] == str(channel.id) for a in answers)  # every one lands in the end
        assert (await later)["id"] == str(other.id)
        first = next(c for c in fake.rest.calls if c.status == 429)
        sent = next(c for c in fake.rest.calls if c.path == f"/channels/{other.id}")  # its first try
        assert sent.at - first.at >= watch.retry_after - 0.05
    finally:
        logging.getLogger("discord.http").removeHandler(watch)
        await http.close()
