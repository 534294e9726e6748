"""`atelier worker`: a process that runs, follows and delivers Discord jobs with no gateway connection.

It is the bot without its front door: the same engine (bot.app), the same cogs loaded over it — so the same
deliverer and progress editor — but it never publishes the slash commands and never opens the gateway. Results go
out over REST with the bot token, which is all delivery needs (cogs/_delivery.py).

What it works: Discord jobs whose owner process died on this host or whose lease lapsed, and deliveries that are
due (Runner.adopt and the delivery loop, every few seconds). The jobs members start are run by the bot that
received the command; a worker takes them over only when that process is gone.
"""

from __future__ import annotations

import asyncio
import logging

from bot.app import App
from bot.discord_bot import AtelierBot

log = logging.getLogger(__name__)


class WorkerBot(AtelierBot):
    def __init__(self, app: App) -> None:
        super().__init__(app)
        self._stopped = asyncio.Event()

    async def sync_commands(self) -> None:
        """A worker answers no interaction, so it publishes no commands (that would replace the bot's)."""

    async def connect(self, *, reconnect: bool = True) -> None:
        raise RuntimeError("a worker never opens the gateway: use WorkerBot.serve")

    async def serve(self, token: str) -> None:
        """Log in over REST (which loads the cogs and starts the runner, AtelierBot.setup_hook), then work until
        closed."""
        await self.login(token)
        assert self.user is not None
        log.info("worker ready as %s (%s): adopting and delivering jobs over REST, no gateway", self.user,
                 self.user.id)
        await self._stopped.wait()

    async def close(self) -> None:
        await super().close()
        self._stopped.set()
