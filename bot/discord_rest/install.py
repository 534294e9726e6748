"""Putting the budget in front of the bot's REST requests, and keeping this process's share of it current.

discord.py sends every bot-token request through `HTTPClient.request` (channel posts and edits, reactions, fetches,
login, command sync); interaction responses go through its webhook adapter and never come here, as Discord exempts
them. The wrapper is set on the bot's own HTTPClient instance, so nothing else in the process is touched.

On a shared store (PostgreSQL) the live processes are counted every REFRESH_S, and the budget split evenly between
them, as the runner's upkeep splits the providers' request rates. On SQLite the
one process has the whole budget.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from bot.discord_rest.budget import RestBudget
from bot.discord_rest.priority import current_priority
from bot.store.base import SharedJobStore, shared
from bot.tasks import TaskSet

if TYPE_CHECKING:
    import discord
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
        if processes != self.budget.processes:
            log.info("Discord REST budget: %d live processes, %.1f requests/s for this one", processes,
                     self.budget.per_second / processes)
        self.budget.share(processes)


def install_budget(bot: discord.Client, app: App) -> RestBudget:
    """Every bot-token REST request of `bot` waits for its turn in a budget of DISCORD_REST_PER_SECOND."""
    budget = RestBudget(app.settings.discord_rest_per_second)
    wrap_requests(bot.http, budget, shared(app.store))
    return budget


def wrap_requests(http: HTTPClient, budget: RestBudget, store: SharedJobStore | None) -> None:
    """Put `budget` in front of `http.request` (on that instance only); on a shared store, keep its share of the
    live processes current."""
    share = ProcessShare(budget, store) if store is not None else None
    send = http.request  # discord.py's own, bound to this client

    async def request(route: Route, **kwargs: Any) -> Any:
        if share is not None:
            await share.counted()
        await budget.acquire(current_priority())
        return await send(route, **kwargs)

    http.request = request  # type: ignore[method-assign]
