"""The long-running processes: `atelier run` (the bot: gateway, slash commands, and the jobs they start) and
`atelier worker` (no gateway: adopts and delivers jobs other processes left, bot.worker). Both are built the same
way — the engine from bot.app, a discord.py client that loads the cogs over it — and stop the same way: SIGINT or
SIGTERM closes the client, then the runner stops (submits on the wire store their handles, leases are handed back).

This module imports discord.py; bot.cli imports it only when one of these commands runs.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import discord

from bot.app import App, open_app
from bot.discord_bot import AtelierBot, point_at
from bot.errors import ConfigError
from bot.jobs import RunnerConfig
from bot.settings import Settings
from bot.shards.plan import plan_from
from bot.store.models import Origin

EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2

# Every long-running process adopts Discord jobs whose process is gone, and delivers what is owed. On a shared
# store (PostgreSQL) new jobs go to whichever process claims them first, so the bot's gateway process shares the
# following and delivering with the workers (on SQLite the bot runs what it creates).
SERVING = RunnerConfig(origins=frozenset({Origin.DISCORD}), adopt=True, hand_off=True)

B = TypeVar("B", bound=AtelierBot)


def stop_signals() -> asyncio.Event:
    """SIGINT and SIGTERM set an event instead of killing the loop, so the process can stop in order."""
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, event.set)
    loop.add_signal_handler(signal.SIGTERM, event.set)
    return event


def _token(settings: Settings) -> str | None:
    if settings.discord_token is None:
        print("atelier: DISCORD_TOKEN is not set: put the bot token from the Discord developer portal in .env "
              "(see .env.example).", file=sys.stderr)
        return None
    return settings.discord_token.get_secret_value()


async def run_bot(settings: Settings) -> int:
    """`atelier run`: connect the gateway (on the shards the settings give it, bot.shards), publish the commands,
    run what members start."""
    plan = plan_from(settings)
    if plan is None:
        return await _serve(settings, AtelierBot, AtelierBot.start, listen=True)
    from bot.discord_shards import ShardedAtelierBot  # noqa: PLC0415 - only a sharded bot needs it

    return await _serve(settings, lambda app: ShardedAtelierBot(app, plan), ShardedAtelierBot.start, listen=True)


async def run_worker(settings: Settings) -> int:
    """`atelier worker`: no gateway and no commands; adopts and delivers jobs over REST (bot.worker)."""
    from bot.worker import WorkerBot  # noqa: PLC0415 - only this command needs it

    return await _serve(settings, WorkerBot, WorkerBot.serve, listen=False)


async def _serve(settings: Settings, make_bot: Callable[[App], B], body: Callable[[B, str], Awaitable[None]], *,
                 listen: bool) -> int:
    """Build the engine and the client, run `body(client, token)` until it ends or a stop signal comes.
    `listen`: serve the webhook endpoint (the bot only: one port per host, and providers call one URL)."""
    token = _token(settings)
    if token is None:
        return EXIT_REFUSED
    point_at(settings)
    stop = stop_signals()
    try:
        async with open_app(settings, deliverers={}, config=SERVING, start=False, listen=listen) as app:
            bot = make_bot(app)
            async with bot:
                return await _until_stopped(bot, body(bot, token), stop)
    except ConfigError as exc:  # e.g. the webhook port is taken
        print(f"atelier: {exc}", file=sys.stderr)
        return EXIT_REFUSED


async def _until_stopped(bot: AtelierBot, body: Awaitable[None], stop: asyncio.Event) -> int:
    running = asyncio.ensure_future(body)
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({running, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if not running.done():
        assert bot.app.drain is not None
        await bot.app.drain.run()  # SIGTERM: refuse new work while what is on the wire lands (bot.ops.drain)
        await bot.close()
    try:
        await running
    except discord.LoginFailure:
        print("atelier: Discord rejected DISCORD_TOKEN (401 Unauthorized): copy the bot token again from "
              "the developer portal.", file=sys.stderr)
        return EXIT_REFUSED
    except discord.PrivilegedIntentsRequired:  # pragma: no cover - the bot asks for none
        print("atelier: Discord refused the gateway intents.", file=sys.stderr)
        return EXIT_REFUSED
    except (discord.HTTPException, OSError) as exc:
        print(f"atelier: cannot reach Discord: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
