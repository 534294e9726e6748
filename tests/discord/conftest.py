"""Shared pieces for in-process Discord tests with SimCord (pinned: simcord==3.2.1).

SimCord swaps discord.py's HTTP client and gateway for an in-memory Discord that lives in the test's event loop; the
bot under test is a real, unmodified `commands.Bot`. Its pytest plugin is loaded automatically (entry point
`simcord.pytest_plugin`): a module or conftest that defines a `simcord_bot` fixture gets `simcord_env`, a started
`simcord.Env` with the bot logged in and READY. `@pytest.mark.simcord(settle_timeout=...)` passes options to it.

What this conftest adds, for any bot:
- `world`: one guild, one text channel and two members (alice, bob) who act through the gateway like real users;
- `image_api`: a tiny image API on 127.0.0.1 standing for a provider (a real socket, i.e. outside SimCord);
- `settle_until`: settle until a condition holds, for work parked in `env.external_wait(...)` on a real socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import discord
import pytest
import simcord
from aiohttp import web

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class World:
    """A guild with one channel and two members; alice and bob act, the channel answers what each one sees."""

    env: simcord.Env
    guild: simcord.GuildHandle
    channel: simcord.ChannelHandle
    alice: simcord.MemberActor
    bob: simcord.MemberActor

    def seen_by(self, member: simcord.MemberActor) -> list[discord.Message]:
        """The channel as `member`'s client shows it: every public message plus the ephemerals addressed to them."""
        return self.channel.history(viewer=member)

    def ids_seen_by(self, member: simcord.MemberActor) -> set[int]:
        return {message.id for message in self.seen_by(member)}


@pytest.fixture
async def world(simcord_env: simcord.Env) -> World:
    # Builders emit gateway events (GUILD_CREATE, GUILD_MEMBER_ADD) to the bot, so they run inside the test's loop.
    guild = simcord_env.create_guild("Atelier Test")
    channel = guild.create_text_channel("studio")
    alice = guild.add_member(simcord_env.create_user("alice"))
    bob = guild.add_member(simcord_env.create_user("bob"))
    return World(simcord_env, guild, channel, alice, bob)


class FakeImageApi:
    """POST /v1/images {"prompt": str} answers the image bytes for that prompt; every prompt is recorded.

    `pause()` holds every answer until `resume()`; `delay_s` delays each answer on the wall clock (this server runs
    in the test's loop but outside the bot, so SimCord's virtual clock does not apply to it).
    """

    def __init__(self) -> None:
        self.prompts: list[str] = []
        self.delay_s = 0.0
        self.url = ""
        self._open = asyncio.Event()
        self._open.set()
        self._runner: web.AppRunner | None = None

    @staticmethod
    def image_for(prompt: str) -> bytes:
        return PNG_MAGIC + b"image of " + prompt.encode()

    def pause(self) -> None:
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/images", self._images)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        self.resume()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _images(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.prompts.append(body["prompt"])
        await self._open.wait()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return web.Response(body=self.image_for(body["prompt"]), content_type="image/png")


@pytest.fixture
async def image_api() -> AsyncIterator[FakeImageApi]:
    api = FakeImageApi()
    await api.start()
    yield api
    await api.stop()


async def settle_until(env: simcord.Env, condition: Callable[[], bool], *, timeout: float = 5.0,
                       what: str = "the expected state") -> None:
    """Settle the bot repeatedly until `condition()` holds (wall-clock `timeout`).

    `env.settle()` returns as soon as all remaining bot work is parked in `env.external_wait(...)`. When the test
    releases such a wait and the release travels over a real socket (a provider's HTTP answer), the bot wakes a few
    loop turns later, so a single settle can still see it parked. A release through an in-process object
    (`asyncio.Event.set()`, `Semaphore.release()`) is joined by one `await env.settle()`.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        await env.settle()
        if condition():
            return
        if loop.time() >= deadline:
            raise AssertionError(f"gave up after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)
