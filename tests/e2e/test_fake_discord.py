"""The fake Discord itself, driven over HTTP as a bot would: it must refuse what Discord refuses, or the end-to-end
tests would pass against a Discord more forgiving than the real one."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from tests.conftest import png_bytes
from tests.fakes.discord import Channel, FakeDiscord, GuildHandle, InteractionRun, MemberActor, Perm

COMMAND = {"name": "imagine", "description": "Make an image", "type": 1,
           "options": [{"name": "prompt", "description": "What", "type": 3, "required": True},
                       {"name": "image", "description": "A picture", "type": 11},
                       {"name": "count", "description": "How many", "type": 4, "min_value": 1, "max_value": 4}]}


@dataclass
class Bot:
    """Just enough of a bot: authenticated calls to the fake's REST API."""

    fake: FakeDiscord
    http: aiohttp.ClientSession

    async def call(self, method: str, path: str, body: Any = None, *, files: dict[str, tuple[str, bytes]] | None = None,
                   auth: bool = True) -> tuple[int, Any]:
        headers = {"Authorization": f"Bot {self.fake.token}"} if auth else {}
        data: Any = None
        if files is not None:
            data = aiohttp.FormData(quote_fields=False)
            data.add_field("payload_json", json.dumps(body or {}), content_type="application/json")
            for field, (name, content) in files.items():
                data.add_field(field, content, filename=name, content_type="application/octet-stream")
            body = None
        async with self.http.request(method, f"{self.fake.api_base}{path}", json=body, data=data,
                                     headers=headers) as resp:
            assert resp.headers.get("Content-Type") in (None, "application/json"), resp.headers
            return resp.status, (await resp.json() if resp.status != 204 else None)

    async def ack(self, run: InteractionRun, kind: int = 5, flags: int = 0) -> tuple[int, Any]:
        i = run.interaction
        return await self.call("POST", f"/interactions/{i.id}/{i.token}/callback?with_response=1",
                               {"type": kind, "data": {"flags": flags}}, auth=False)

    def webhook(self, run: InteractionRun, tail: str = "") -> str:
        return f"/webhooks/{self.fake.application_id}/{run.interaction.token}{tail}"


@dataclass
class World:
    fake: FakeDiscord
    bot: Bot
    guild: GuildHandle
    channel: Channel
    alice: MemberActor
    bob: MemberActor


@pytest.fixture
async def world() -> AsyncIterator[World]:
    fake = FakeDiscord()
    await fake.start()
    guild = await fake.create_guild()
    channel = await guild.create_channel("studio")
    alice, bob = await guild.add_member("alice"), await guild.add_member("bob")
    async with aiohttp.ClientSession() as http:
        bot = Bot(fake, http)
        status, _ = await bot.call("PUT", f"/applications/{fake.application_id}/guilds/{guild.id}/commands", [COMMAND])
        assert status == 200
        yield World(fake, bot, guild, channel, alice, bob)
    await fake.stop()


async def test_the_bot_token_is_required_and_unknown_routes_are_404_and_logged(world: World) -> None:
    assert (await world.bot.call("GET", "/users/@me", auth=False))[0] == 401
    status, me = await world.bot.call("GET", "/users/@me")
    assert status == 200 and me["id"] == str(world.fake.bot.id) and me["bot"] is True
    status, body = await world.bot.call("GET", "/channels/1/pins")
    assert status == 404 and body["code"] == 0
    assert world.fake.rest.unknown == ["GET /api/v10/channels/1/pins"]


async def test_the_ack_deadline_and_a_second_ack(world: World) -> None:
    run = await world.alice.run_command(world.channel, "imagine", prompt="a fox")
    assert (await world.bot.ack(run))[0] == 200
    status, body = await world.bot.ack(run)
    assert (status, body["code"]) == (400, 40060)

    world.fake.ack_deadline_s = 0.05
    late = await world.alice.run_command(world.channel, "imagine", prompt="a fox")
    await asyncio.sleep(0.1)
    status, body = await world.bot.ack(late)
    assert (status, body["code"]) == (404, 10062)
    with pytest.raises(AssertionError, match="did not respond"):
        await late.acked()


async def test_the_token_dies_after_its_lifetime(world: World) -> None:
    world.fake.token_ttl_s = 0.1
    run = await world.alice.run_command(world.channel, "imagine", prompt="a fox")
    await world.bot.ack(run, flags=64)
    assert (await world.bot.call("PATCH", world.bot.webhook(run, "/messages/@original"), {"content": "ok"}))[0] \
        == 200
    await asyncio.sleep(0.15)
    for method, tail, body in (("PATCH", "/messages/@original", {"content": "late"}),
                               ("GET", "/messages/@original", None), ("POST", "?wait=1", {"content": "late"})):
        status, answer = await world.bot.call(method, world.bot.webhook(run, tail), body, auth=False)
        assert (status, answer["code"]) == (401, 50027), (method, tail)


async def test_the_first_followup_after_a_defer_is_the_deferred_message_and_stays_private(world: World) -> None:
    run = await world.alice.run_command(world.channel, "imagine", prompt="a fox")
    status, body = await world.bot.ack(run, flags=64)
    deferred = body["resource"]["message"]
    assert body["interaction"]["response_message_loading"] and deferred["flags"] & (64 | 128) == 64 | 128
    status, followup = await world.bot.call("POST", world.bot.webhook(run, "?wait=1"), {"content": "done"},
                                            auth=False)
    assert followup["id"] == deferred["id"] and followup["flags"] == 64  # not a second message; still private
    assert (await run.reply()).content == "done"
    # Private: invisible to others and to the channel endpoints, which know only public messages.
    message = run.response
    assert message is not None and world.alice.can_see(message) and not world.bob.can_see(message)
    status, history = await world.bot.call("GET", f"/channels/{world.channel.id}/messages?limit=50")
    assert status == 200 and history == []
    status, body = await world.bot.call("GET", f"/channels/{world.channel.id}/messages/{message.id}")
    assert (status, body["code"]) == (404, 10008)
    # A second follow-up is a new message.
    status, second = await world.bot.call("POST", world.bot.webhook(run, "?wait=1"), {"content": "more"},
                                          auth=False)
    assert second["id"] != deferred["id"] and second["flags"] == 0


async def test_a_nonce_enforced_post_is_answered_with_the_message_already_posted(world: World) -> None:
    path = f"/channels/{world.channel.id}/messages"
    first = await world.bot.call("POST", path, {"content": "hi", "nonce": "n-1", "enforce_nonce": True})
    again = await world.bot.call("POST", path, {"content": "hi", "nonce": "n-1", "enforce_nonce": True})
    unenforced = await world.bot.call("POST", path, {"content": "hi", "nonce": "n-1"})
    assert first[1]["id"] == again[1]["id"] != unenforced[1]["id"]
    assert len(world.channel.live()) == 2 and world.fake.nonce_hits == 1
    # Discord does not keep nonces: only the answer to the post carries it; history and GET do not.
    assert first[1]["nonce"] == "n-1"
    _, history = await world.bot.call("GET", f"{path}?limit=50")
    _, fetched = await world.bot.call("GET", f"{path}/{first[1]['id']}")
    assert all("nonce" not in m for m in history) and "nonce" not in fetched
    # Past the window the same nonce posts again.
    world.fake.nonce_window_s = 0.0
    later = await world.bot.call("POST", path, {"content": "hi", "nonce": "n-1", "enforce_nonce": True})
    assert later[1]["id"] not in (first[1]["id"], unenforced[1]["id"])


async def test_who_a_post_pings_follows_its_allowed_mentions_as_on_discord(world: World) -> None:
    path = f"/channels/{world.channel.id}/messages"
    loud = await world.guild.create_role("loud")
    loud.mentionable = True
    carol = await world.guild.add_member("carol", roles=[loud])
    text = f"{world.alice.mention} {world.bob.mention} <@&{loud.id}> @everyone"

    async def pinged(allowed: dict[str, Any] | None) -> set[int]:
        status, body = await world.bot.call("POST", path, {"content": text, **(
            {"allowed_mentions": allowed} if allowed is not None else {})})
        assert status == 200, body
        return world.channel.messages[int(body["id"])].pinged

    members = set(world.guild.guild.members) - {world.fake.bot.id}
    # No allowed_mentions: everything parses (the bot may mention everyone in this guild): everybody.
    assert await pinged(None) == members
    assert await pinged({"parse": []}) == set()
    assert await pinged({"parse": [], "users": [str(world.alice.id)]}) == {world.alice.id}
    assert await pinged({"parse": ["users"]}) == {world.alice.id, world.bob.id}
    assert await pinged({"parse": [], "roles": [str(loud.id)]}) == {carol.id}
    assert await pinged({"parse": ["everyone"]}) == members
    status, body = await world.bot.call("POST", path, {"content": text, "allowed_mentions": {
        "parse": ["users"], "users": [str(world.alice.id)]}})
    assert (status, body["code"]) == (400, 50035)


async def test_permissions_and_the_upload_limit(world: World) -> None:
    path = f"/channels/{world.channel.id}/messages"
    image = {"files[0]": ("a.png", png_bytes(64, 64))}
    await world.guild.set_bot_permissions(world.channel, deny=Perm.ATTACH_FILES)
    assert world.channel.overwrites[0].deny == Perm.ATTACH_FILES
    status, body = await world.bot.call("POST", path, {"content": "with a file"}, files=image)
    assert (status, body["code"]) == (403, 50013)
    assert (await world.bot.call("POST", path, {"content": "text is fine"}))[0] == 200
    await world.guild.set_bot_permissions(world.channel)
    status, posted = await world.bot.call("POST", path, {"content": "now it works"}, files=image)
    assert status == 200 and posted["attachments"][0]["filename"] == "a.png"
    big = {"files[0]": ("big.bin", b"\0" * (world.guild.guild.upload_limit + 1))}
    status, body = await world.bot.call("POST", path, {"content": "too big"}, files=big)
    assert (status, body["code"]) == (413, 40005)


async def test_attachment_urls_are_signed_and_expire(world: World) -> None:
    world.fake.cdn.url_ttl_s = 0.2
    run = await world.alice.run_command(world.channel, "imagine", prompt="a fox", image=("me.png", b"pixels"))
    [attachment] = run.interaction.payload["data"]["resolved"]["attachments"].values()
    assert attachment["content_type"] == "image/png" and attachment["size"] == 6
    http = world.bot.http
    async with http.get(attachment["url"]) as resp:
        assert resp.status == 200 and await resp.read() == b"pixels"
    async with http.get(attachment["url"].replace("hm=", "hm=0")) as resp:
        assert resp.status == 403
    expires = int(parse_qs(urlsplit(attachment["url"]).query)["ex"][0], 16)  # whole seconds, as on Discord
    await asyncio.sleep(expires - time.time() + 0.05)
    async with http.get(attachment["url"]) as resp:
        assert resp.status == 404


async def test_the_member_cannot_send_what_discords_client_would_not(world: World) -> None:
    with pytest.raises(TypeError, match="needs"):
        await world.alice.run_command(world.channel, "imagine")
    with pytest.raises(TypeError, match="no option"):
        await world.alice.run_command(world.channel, "imagine", prompt="x", style="y")
    with pytest.raises(ValueError, match="outside"):
        await world.alice.run_command(world.channel, "imagine", prompt="x", count=5)
    with pytest.raises(LookupError):
        await world.alice.run_command(world.channel, "jobs")


async def test_a_rate_limit_answers_429_with_what_discord_py_reads(world: World) -> None:
    world.fake.rate_limit_next(1, retry_after=0.25)
    async with world.bot.http.post(f"{world.fake.api_base}/channels/{world.channel.id}/messages",
                                   json={"content": "hi"},
                                   headers={"Authorization": f"Bot {world.fake.token}"}) as resp:
        body = await resp.json()
        assert resp.status == 429 and body["retry_after"] == 0.25 and body["global"] is False
        assert resp.headers["X-RateLimit-Remaining"] == "0" and resp.headers["Via"]
    assert (await world.bot.call("POST", f"/channels/{world.channel.id}/messages", {"content": "hi"}))[0] == 200
