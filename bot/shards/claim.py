"""Claiming a range of shards among the bot processes on one database.

discord.py fixes a client's shard list when it launches, so a process claims its range before it connects and
keeps it for life. A process that finds every range served stands by — working jobs like any worker meanwhile —
and claims the first range whose process dies: that process's liveness lock goes with its connection, so the range
is free at the standby's next look, a couple of seconds later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bot.shards.plan import ShardPlan
from bot.store.base import JobStore, shared

log = logging.getLogger(__name__)

STANDBY_LOOK_S = 2.0  # how often a standby looks for a free range: a dead process frees its range at once


async def claim_range(store: JobStore, plan: ShardPlan, *, closed: Callable[[], bool],
                      look_s: float = STANDBY_LOOK_S) -> tuple[int, ...] | None:
    """The shards this process connects: the fixed ones, every shard on a store only one process uses (SQLite),
    or a claimed range, waiting for one to be free. None when the process is closed while it waits."""
    if plan.fixed is not None:
        return plan.fixed
    common = shared(store)
    if common is None:
        return tuple(range(plan.count))
    standing_by = False
    while not closed():
        claimed = await common.claim_shards(plan.count, plan.ranges())
        if claimed is not None:
            if standing_by:
                log.info("a shard range is free again: taking over shards %s of %d", _ids(claimed), plan.count)
            else:
                log.info("claimed shards %s of %d", _ids(claimed), plan.count)
            return claimed
        if not standing_by:
            standing_by = True
            log.info("every range of %d shard(s) of %d is served by a live process: standing by (working jobs "
                     "meanwhile) until one is free", plan.per_process, plan.count)
        await asyncio.sleep(look_s)
    return None


def _ids(shards: tuple[int, ...]) -> str:
    return ",".join(str(s) for s in shards)
