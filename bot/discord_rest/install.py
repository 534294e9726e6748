"""Putting the budget in front of the bot's REST requests, and keeping this process's share of it current.

discord.py sends every bot-token request through `HTTPClient.request` (channel posts and edits, reactions, fetches,
login, command sync); interaction responses go through its webhook adapter instead, as Discord exempts them. Both
use the client's one aiohttp session, and that is where the budget stands (see `wrap_requests`): each bot-token
request waits there, as it leaves; interaction endpoints, the gateway and the CDN pass straight on. Only the bot's
own HTTPClient instance is touched.

On a shared store (PostgreSQL) the live processes are counted every REFRESH_S, and the budget split evenly between
them, as the runner's upkeep splits the providers' request rates. On SQLite the one process has the whole budget.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import discord
import yarl

from bot.discord_rest.budget import RestBudget
from bot.discord_rest.priority import current_priority
from bot.store.base import SharedJobStore, shared
from bot.tasks import TaskSet

if TYPE_CHECKING:
    from discord.http import HTTPClient, Route

    from bot.app import App

log = logging.getLogger(__name__)

REFRESH_S = 3.0


class ProcessShare:
    """Counts the live processes on a shared store every REFRESH_S, and tells the budget.

    The first count is awaited by the first request, the login: a process that joins must not take the whole
    budget while the others already share it. At login this process is not among the live ones yet (its runner
    joins the store in setup_hook, after the login), so that count adds it. After that the count runs in a tracked
    task of its own, whether or not requests are being made, so that a burst after a quiet spell starts with the
    right share."""

    def __init__(self, budget: RestBudget, store: SharedJobStore) -> None:
        self.budget = budget
        self.store = store
        self.tasks = TaskSet("rest-budget")
        self._counted: asyncio.Task[None] | None = None
        self._told: int | None = None  # the count last logged

    async def counted(self) -> None:
        if self._counted is None:
            self._counted = self.tasks.spawn(self._count(joining=True), name="first-count")
            self.tasks.spawn(self._keep_counting(), name="live-processes")
        await asyncio.shield(self._counted)

    async def _keep_counting(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            await self._count()

    async def _count(self, *, joining: bool = False) -> None:
        try:
            processes = await self.store.live_processes() + (1 if joining else 0)
        except Exception as exc:  # the store is busy or reconnecting: keep the share it had, count again later
            log.warning("counting live processes for the Discord REST budget failed: %s", exc)
            return
        self.budget.share(processes)
        # Logged from the first count after the login on: a process that fails its login says one line only.
        if not joining and processes != self._told:
            self._told = processes
            log.info("Discord REST budget: %d live processes, %.1f requests/s for this one", processes,
                     self.budget.per_second / processes)


def install_budget(bot: discord.Client, app: App) -> RestBudget:
    """Every bot-token REST request of `bot` waits for its turn in a budget of DISCORD_REST_PER_SECOND."""
    budget = RestBudget(app.settings.discord_rest_per_second)
    wrap_requests(bot.http, budget, shared(app.store))
    return budget


def wrap_requests(http: HTTPClient, budget: RestBudget, store: SharedJobStore | None) -> None:
    """Put `budget` in front of every bot-token request `http` sends (that instance only); on a shared store, keep
    its share of the live processes current.

    The token is taken where the request leaves, at the HTTP session, not where `HTTPClient.request` is entered:
    inside it discord.py waits for its per-route buckets and for its global lock, and retries 429s and 5xx answers,
    so requests let through at its entrance would bunch up behind those waits and leave together. The session
    exists only once `static_login` has made it, so it is gated at the first request (the login's own)."""
    share = ProcessShare(budget, store) if store is not None else None
    send = http.request  # discord.py's own, bound to this client

    async def request(route: Route, **kwargs: Any) -> Any:
        gate_session(http, budget)
        if share is not None:
            await share.counted()
        return await send(route, **kwargs)

    http.request = request  # type: ignore[method-assign]


SESSION = "_HTTPClient__session"  # discord.py's one session for its REST calls, the webhook adapter's and the gateway


def gate_session(http: HTTPClient, budget: RestBudget) -> None:
    session = getattr(http, SESSION, None)
    if isinstance(session, aiohttp.ClientSession):
        setattr(http, SESSION, GatedSession(session, budget))


class GatedSession:
    """discord.py's aiohttp session, its `request` waiting in the budget for every bot-token REST call; everything
    else (interaction endpoints, which Discord exempts, the gateway, attachment downloads) passes straight on."""

    def __init__(self, session: aiohttp.ClientSession, budget: RestBudget) -> None:
        self._session = session
        self._budget = budget

    def request(self, method: str, url: str | yarl.URL, **kwargs: Any) -> Any:
        if not counted(str(url)):
            return self._session.request(method, url, **kwargs)
        return _Gated(self._budget, lambda: self._session.request(method, url, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


class _Gated:
    """`async with session.request(...)`, entered once the budget lets the request go."""

    def __init__(self, budget: RestBudget, start: Callable[[], Any]) -> None:
        self._budget = budget
        self._start = start
        self._request: Any = None

    async def __aenter__(self) -> aiohttp.ClientResponse:
        await self._budget.acquire(current_priority())
        self._request = self._start()
        response: aiohttp.ClientResponse = await self._request.__aenter__()
        return response

    async def __aexit__(self, *exc: object) -> None:
        if self._request is not None:
            await self._request.__aexit__(*exc)


INTERACTION = re.compile(r"^/(interactions/|webhooks/[^/]+/[^/?]+)")


def counted(url: str) -> bool:
    """Whether Discord counts a request to `url` in the bot's global limit: its REST API, except the interaction
    endpoints (callbacks, and everything under an interaction token: follow-ups, @original)."""
    base = discord.http.Route.BASE
    if not url.startswith(base + "/"):
        return False  # not the REST API (the CDN, the gateway)
    return not INTERACTION.match(url[len(base):])
