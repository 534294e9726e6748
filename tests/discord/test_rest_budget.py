"""The REST budget (bot.discord_rest) in front of a real discord.py HTTPClient talking to the fake Discord over a
socket: a burst is spread under the rate and never meets the global 429; a result waiting behind a line of
progress edits goes first; a request cancelled while it waits leaves the line and never reaches Discord."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import discord
import pytest
from pydantic import ValidationError

from bot.discord_rest import Priority, RestBudget, rest_priority
from bot.discord_rest.budget import TOKEN_BACK_S
from bot.discord_rest.install import wrap_requests
from bot.settings import Settings
from tests.fakes.discord import Channel, FakeDiscord


@dataclass
class Client:
    fake: FakeDiscord
    http: discord.http.HTTPClient
    budget: RestBudget
    channel: Channel

    def calls(self) -> list[Any]:
        return self.fake.rest.global_requests()


@pytest.fixture
def aimed() -> Iterator[None]:
    saved = discord.http.Route.BASE
    yield
    discord.http.Route.BASE = saved  # discord.py's Route.BASE is global: put back for the other tests


@pytest.fixture
async def make(aimed: None) -> AsyncIterator[Callable[[float], Coroutine[Any, Any, Client]]]:
    fakes: list[FakeDiscord] = []
    clients: list[discord.http.HTTPClient] = []

    async def make(per_second: float) -> Client:
        fake = FakeDiscord()
        await fake.start()
        fakes.append(fake)
        discord.http.Route.BASE = fake.api_base
        channel = await (await fake.create_guild()).create_channel("budget")
        http = discord.http.HTTPClient(asyncio.get_running_loop())
        clients.append(http)
        budget = RestBudget(per_second)
        wrap_requests(http, budget, None)  # SQLite: one process, the whole budget
        await http.static_login(fake.token)
        return Client(fake, http, budget, channel)

    yield make
    for http in clients:
        await http.close()
    for fake in fakes:
        await fake.stop()


async def test_a_burst_is_spread_under_the_rate_and_meets_no_global_429(make: Any) -> None:
    client: Client = await make(10)
    client.fake.rest.global_per_second = 10
    answers = await asyncio.gather(*(client.http.get_channel(client.channel.id) for _ in range(40)))
    assert len(answers) == 40
    assert client.fake.rest.global_429s == 0
    assert client.fake.rest.peak_per_second <= 10
    sent = [c.at for c in client.calls()]
    assert sent[-1] - sent[0] >= 4 * TOKEN_BACK_S - 0.1  # 41 requests (login included): ten at a time


async def messages_in_channels(client: Client, count: int) -> list[tuple[int, int]]:
    """(channel id, message id) of one status message in each of `count` new channels: each edit its own route
    bucket, so that discord.py holds none of them back on its own and every one reaches the budget."""
    guild = await client.fake.create_guild()
    out = []
    for n in range(count):
        channel = await guild.create_channel(f"job-{n}")
        message = await client.http.send_message(channel.id, params=discord.http.handle_message_parameters(
            content="queued"))
        out.append((channel.id, int(message["id"])))
    return out


def edit(client: Client, where: tuple[int, int], text: str) -> asyncio.Task[Any]:
    with rest_priority(Priority.PROGRESS):
        return asyncio.create_task(client.http.edit_message(
            where[0], where[1], params=discord.http.handle_message_parameters(content=text)))


async def all_asked(client: Client, sent_before: int, count: int) -> int:
    """Wait until `count` requests have each either been let through or joined the line; how many went."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while client.budget.waiting() + client.budget.sent - sent_before < count:
        assert loop.time() < deadline, "the requests never reached the budget"
        await asyncio.sleep(0.01)
    return client.budget.sent - sent_before


async def test_a_result_waiting_behind_progress_edits_goes_first(make: Any) -> None:
    client: Client = await make(4)
    statuses = await messages_in_channels(client, 8)
    sent_before = client.budget.sent
    edits = [edit(client, where, f"running {n}") for n, where in enumerate(statuses)]
    gone = await all_asked(client, sent_before, 8)
    assert gone < 8
    with rest_priority(Priority.RESULT):
        result = asyncio.create_task(client.http.send_message(
            client.channel.id, params=discord.http.handle_message_parameters(content="your image")))
    await asyncio.gather(result, *edits)
    after = [f"{c.method} {c.body.get('content')}" for c in client.calls()
             if c.method == "PATCH" or (c.method == "POST" and c.body.get("content") != "queued")]
    # The edits that had a token before the result asked, then the result, then the rest.
    assert after.index("POST your image") == gone, after
    assert sorted(a for a in after if a.startswith("PATCH")) == [f"PATCH running {n}" for n in range(8)]
    assert client.budget.waiting() == 0


async def test_a_request_cancelled_while_waiting_leaves_the_line(make: Any) -> None:
    client: Client = await make(2)
    statuses = await messages_in_channels(client, 5)
    sent_before = client.budget.sent
    edits = [edit(client, where, f"edit {n}") for n, where in enumerate(statuses)]
    gone = await all_asked(client, sent_before, 5)
    assert gone < 5
    for task in edits:  # those on their way may land or not; those in line must not
        task.cancel()
    for task in edits:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert client.budget.waiting() == 0
    loop = asyncio.get_running_loop()
    asked = loop.time()
    await client.http.get_channel(client.channel.id)  # the next token is this one's, not a cancelled edit's
    assert loop.time() - asked <= TOKEN_BACK_S + 0.3
    assert len([c for c in client.calls() if c.method == "PATCH"]) <= gone


@pytest.mark.parametrize("value", ["0", "-5", "51", "120"])
def test_a_budget_discord_would_not_allow_is_refused_with_the_reason(value: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_REST_PER_SECOND", value)
    with pytest.raises(ValidationError, match=r"at most 50 .*Discord allows 50 requests per second per bot token"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_the_budget_defaults_to_40_and_takes_up_to_50(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).discord_rest_per_second == 40  # type: ignore[call-arg]
    monkeypatch.setenv("DISCORD_REST_PER_SECOND", "50")
    assert Settings(_env_file=None).discord_rest_per_second == 50  # type: ignore[call-arg]
