"""A process sharing the gateway's coordination on a PostgreSQL store, for test_pg_gateway. Not a test module.

    python -m tests.store.gateway_racer DATABASE_URL OWNER MODE [ARG]

Registers as OWNER (its liveness lock), prints "ready", waits for a line "go" on stdin, then:
- claim COUNT:PER  claims a range of COUNT shards in ranges of PER, prints it (or "none"), and stays alive;
- identify N       takes bucket 0's IDENTIFY turn N times (1 s apart), printing the wall time of each;
- publish          publishes the "guild:1" commands once unless already published, printing "published" or
                   "skipped" (publishing takes 0.5 s, or forever when ARG is "hang", after printing "publishing").
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from bot.shards.plan import ShardPlan
from bot.store import PostgresJobStore, open_store


async def race(url: str, owner: str, mode: str, arg: str) -> None:
    store = await open_store(url)
    assert isinstance(store, PostgresJobStore)
    await store.join(owner, host="racer-host", pid=os.getpid())
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    if mode == "claim":
        count, per = (int(n) for n in arg.split(":"))
        claimed = await store.claim_shards(count, ShardPlan(count, None, per).ranges())
        print(",".join(map(str, claimed)) if claimed else "none", flush=True)
        await asyncio.Event().wait()
    elif mode == "identify":
        for _ in range(int(arg)):
            while (wait := await store.take_identify_turn(0, 1.0)) > 0:
                await asyncio.sleep(wait)
            print(time.time(), flush=True)
    elif mode == "publish":
        async def publish() -> None:
            print("publishing", flush=True)
            await asyncio.sleep(3600 if arg == "hang" else 0.5)

        done = await store.sync_commands_once("guild:1", "digest-1", publish)
        print("published" if done else "skipped", flush=True)
    await store.close()


if __name__ == "__main__":
    asyncio.run(race(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else ""))
