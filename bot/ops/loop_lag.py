"""Event-loop lag: how late the loop wakes a timer. Anything blocking the loop (a slow decode on it, a sync call)
shows here before members notice slow acknowledgements."""

from __future__ import annotations

import asyncio
import time

from bot.ops.metrics import LOOP_LAG

INTERVAL_S = 0.5


async def watch_loop_lag(interval_s: float = INTERVAL_S) -> None:
    while True:
        began = time.monotonic()
        await asyncio.sleep(interval_s)
        LOOP_LAG.observe(max(0.0, time.monotonic() - began - interval_s))
