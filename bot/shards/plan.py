"""Which gateway shards the settings ask this process for: none (one unsharded connection), exactly the shards
DISCORD_SHARD_IDS names, or a range to claim among processes (bot.shards.claim)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.settings import Settings


@dataclass(frozen=True)
class ShardPlan:
    count: int  # DISCORD_SHARD_COUNT: how many shards the whole bot runs
    fixed: tuple[int, ...] | None  # DISCORD_SHARD_IDS: exactly these; None: claim a range
    per_process: int = 1  # DISCORD_SHARDS_PER_PROCESS: the size of a claimed range

    def ranges(self) -> list[tuple[int, ...]]:
        """The ranges processes claim: consecutive runs of `per_process` shards (the last may be shorter)."""
        return [tuple(range(first, min(first + self.per_process, self.count)))
                for first in range(0, self.count, self.per_process)]


def plan_from(settings: Settings) -> ShardPlan | None:
    """None when DISCORD_SHARD_COUNT is unset: the bot connects one unsharded session, as a small bot does."""
    if settings.discord_shard_count is None:
        return None
    ids = settings.shard_ids
    return ShardPlan(count=settings.discord_shard_count, fixed=tuple(ids) if ids else None,
                     per_process=settings.discord_shards_per_process)
