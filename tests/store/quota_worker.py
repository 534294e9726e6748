"""A separate process racing for one member's quota (used by test_quota). Not a test module itself.

    python -m tests.store.quota_worker DATABASE_URL ATTEMPTS GO_FILE

Opens the store, prints "ready", waits for GO_FILE to exist (so every process starts at once), tries
ATTEMPTS create_job calls concurrently and prints how many were admitted.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from bot.errors import QuotaError
from bot.store import open_store
from tests.store.helpers import ALICE, GENEROUS, NOW, new_job


async def race(url: str, attempts: int, go: Path) -> int:
    store = await open_store(url)
    try:
        print("ready", flush=True)
        while not go.exists():
            await asyncio.sleep(0.002)
        results = await asyncio.gather(
            *(store.create_job(new_job(ALICE), defaults=GENEROUS, now=NOW) for _ in range(attempts)),
            return_exceptions=True)
    finally:
        await store.close()
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, QuotaError):
            raise result
    return sum(not isinstance(r, BaseException) for r in results)


if __name__ == "__main__":
    print(asyncio.run(race(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))), flush=True)
