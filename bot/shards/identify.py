"""IDENTIFY turns for the whole bot, across processes.

Discord starts sessions in buckets `shard_id % max_concurrency`, one IDENTIFY per bucket per 5 s for the bot as a
whole; an IDENTIFY too soon is refused (op 9), and 1,000 a day reset the token. discord.py spaces IDENTIFYs only
within one process, and with a shard count set it never reads `max_concurrency` from GET /gateway/bot. So before
each IDENTIFY a process takes its bucket's turn: in the shared store when there is one (the server's clock decides),
else in memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from bot.store.base import JobStore, shared

log = logging.getLogger(__name__)

IDENTIFY_INTERVAL_S = 5.0  # Discord's: one IDENTIFY per bucket per 5 s
MARGIN_S = 0.5  # the IDENTIFY leaves a moment after its turn is taken, and reaches Discord later still


class IdentifyTurns:
    def __init__(self, store: JobStore, max_concurrency: Callable[[], Awaitable[int]], *,
                 interval_s: float = IDENTIFY_INTERVAL_S + MARGIN_S) -> None:
        self._store = store
        self._max_concurrency = max_concurrency
        self._concurrency: int | None = None
        self.interval_s = interval_s
        self._local: dict[int, float] = {}  # bucket -> monotonic time of its last turn (one process)

    async def bucket_of(self, shard_id: int) -> int:
        if self._concurrency is None:
            self._concurrency = max(1, await self._max_concurrency())
        return shard_id % self._concurrency

    async def wait_turn(self, shard_id: int) -> float:
        """Return once this shard may IDENTIFY; the seconds it waited."""
        bucket = await self.bucket_of(shard_id)
        common = shared(self._store)
        waited = 0.0
        while True:
            if common is not None:
                wait = await common.take_identify_turn(bucket, self.interval_s)
            else:
                wait = self._take_local(bucket)
            if wait <= 0:
                if waited:
                    log.info("shard %d identifies after waiting %.1f s for bucket %d's turn", shard_id, waited,
                             bucket)
                return waited
            await asyncio.sleep(wait)
            waited += wait

    def _take_local(self, bucket: int) -> float:
        now = time.monotonic()
        last = self._local.get(bucket)
        if last is not None and now - last < self.interval_s:
            return self.interval_s - (now - last)
        self._local[bucket] = now
        return 0.0
