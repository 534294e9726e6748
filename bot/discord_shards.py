"""The bot on gateway shards: discord.py's AutoShardedBot, connecting the shards this process claims
(bot.shards.claim) and IDENTIFYing each in its bucket's turn for the whole bot (bot.shards.identify).

What arrives on a shard is handled by the process that connects it: a guild's interactions and reactions always
land on the shard `(guild_id >> 22) % shard_count`, and DM reactions on shard 0. Any process may deliver any job.
The per-member cooldown (bot.cooldowns) stays in memory: it is per guild, and a guild's commands all reach the one
process serving its shard, so it is exact without the database (a shard moving to another process after a crash
forgets a few seconds of cooldown). Guild settings are read from the store each time, so every process agrees.
"""

from __future__ import annotations

import logging
from typing import Any

from discord.ext import commands

from bot.app import App
from bot.discord_bot import AtelierBot
from bot.shards.claim import claim_range
from bot.shards.identify import IdentifyTurns
from bot.shards.plan import ShardPlan

log = logging.getLogger(__name__)


class ShardedAtelierBot(AtelierBot, commands.AutoShardedBot):
    def __init__(self, app: App, plan: ShardPlan, **options: Any) -> None:
        super().__init__(app, shard_count=plan.count, **options)
        self.plan = plan
        self.identify_turns = IdentifyTurns(app.store, self._max_concurrency)

    async def setup_hook(self) -> None:
        await super().setup_hook()  # cogs, commands, and the runner: a standby works jobs while it waits
        runner = self.app.runner
        await self.app.store.join(runner.owner, host=runner.host, pid=runner.pid)
        claimed = await claim_range(self.app.store, self.plan, closed=self.is_closed)
        if claimed is not None:
            # Read when the shards launch, right after this hook: the list is fixed for the client's life.
            self.shard_ids = list(claimed)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Every IDENTIFY, first or after a lost session, waits for its bucket's turn across the bot."""
        await self.identify_turns.wait_turn(shard_id or 0)

    async def _max_concurrency(self) -> int:
        """Discord's IDENTIFY concurrency for this bot, from GET /gateway/bot (discord.py skips that call when the
        shard count is given)."""
        recommended, _, limits = await self.http.get_bot_gateway()
        if recommended > self.plan.count:
            log.warning("Discord recommends %d shards for this bot; DISCORD_SHARD_COUNT is %d", recommended,
                        self.plan.count)
        remaining = int(limits.get("remaining", 1000))
        if remaining < 100:
            log.warning("only %d session starts left today (Discord resets the token after 1,000)", remaining)
        return int(limits.get("max_concurrency", 1))
