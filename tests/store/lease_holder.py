"""A process that holds a job's lease on a PostgreSQL store, for test_pg_leases. Not a test module itself.

    python -m tests.store.lease_holder DATABASE_URL JOB_ID OWNER

Registers as OWNER (its liveness lock), claims the job for five minutes, prints "holding" and sleeps until killed.
"""

from __future__ import annotations

import asyncio
import os
import sys

from bot.store import open_store
from tests.store.helpers import NOW


async def hold(url: str, job_id: int, owner: str) -> None:
    store = await open_store(url)
    await store.join(owner, host="holder-host", pid=os.getpid())
    assert await store.claim(job_id, owner, host="holder-host", pid=os.getpid(), now=NOW, lease_s=300)
    print("holding", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(hold(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
