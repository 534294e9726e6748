"""What the PostgreSQL store's parts share: the pool, a few query helpers, fencing and the SQL fragments that
decide whether a lease may be taken."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from bot.store import fencing
from bot.store.fencing import LeaseLostError
from bot.store.models import IN_FLIGHT_STATES, TERMINAL_STATES, Job
from bot.store.postgres.connection import Connection
from bot.store.postgres.presence import PROCESS_ALIVE
from bot.store.rows import JOB_SELECT, job_from_row

__all__ = ["AT_PROVIDER", "IN_FLIGHT", "JOB_SELECT", "OWED", "TAKEABLE", "TERMINAL", "PgBase"]

IN_FLIGHT = sorted(s.value for s in IN_FLIGHT_STATES)
TERMINAL = sorted(s.value for s in TERMINAL_STATES)
AT_PROVIDER = ["fetching", "queued", "running", "submitting"]


# The lease of `jobs` may be taken by %(me)s: free, ours, lapsed by the database's clock, or held by a registered
# process whose liveness lock is gone (it died, on whatever host). An owner that never registered (an older
# Atelier, a test) counts as alive until its lease lapses: taking a live process's job would run it twice.
TAKEABLE = (
    "(jobs.lease_owner IS NULL OR jobs.lease_owner = %(me)s OR jobs.lease_expires_at < now()"  # noqa: S608 - constant SQL fragments
    f" OR EXISTS (SELECT 1 FROM processes p WHERE p.owner = jobs.lease_owner AND NOT {PROCESS_ALIVE}))")
# Work that is owed: unfinished, or finished with a delivery pending.
OWED = ("(jobs.state = ANY(%(in_flight)s)"
        " OR jobs.id IN (SELECT job_id FROM deliveries WHERE state = 'pending'))")


class PgBase:
    _pool: AsyncConnectionPool[Connection]
    clock: Callable[[], datetime]

    def __init__(self) -> None:
        # When this process last renewed its leases (monotonic), and for how long, per owner: a fenced write
        # after more than half a lease without a renewal renews first (see fenced()).
        self._renewed: dict[str, tuple[float, float]] = {}
        self._renewals: dict[str, asyncio.Future[int]] = {}

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        """A pooled connection for one task's statements. psycopg_pool can lose a cancellation that arrives while
        it hands a connection over under contention (the task then runs on as if never cancelled, and a stopping
        runner waits for it forever): a cancellation requested meanwhile is raised here once the connection is
        back."""
        task = asyncio.current_task()
        requested = task.cancelling() if task is not None else 0
        async with self._pool.connection() as conn:
            yield conn
        if task is not None and task.cancelling() > requested:
            raise asyncio.CancelledError

    async def _all(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        async with self._connection() as conn:
            return await (await conn.execute(sql, params)).fetchall()

    async def _one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> dict[str, Any] | None:
        async with self._connection() as conn:
            return await (await conn.execute(sql, params)).fetchone()

    async def _count(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        async with self._connection() as conn:
            return (await conn.execute(sql, params)).rowcount

    @staticmethod
    async def _job(conn: Connection, job_id: int) -> Job | None:
        row = await (await conn.execute(f"{JOB_SELECT} WHERE id = %s", (job_id,))).fetchone()
        return job_from_row(row) if row else None

    # --- fencing -------------------------------------------------------------------------------------------

    async def fenced(self) -> str | None:
        """The owner this task writes as (bot.store.fencing), after making sure its leases are fresh: a process
        that has not renewed them for half a lease (it was stalled) renews before it writes anything, so that a
        write it makes is never one another process's takeover could overtake."""
        owner = fencing.holder()
        if owner is None:
            return None
        renewed = self._renewed.get(owner)
        if renewed is not None and time.monotonic() - renewed[0] > renewed[1] / 2:
            # Every job of a process wakes from a stall at once: one renewal serves them all.
            renewal = self._renewals.get(owner)
            if renewal is None or renewal.done():
                renewal = asyncio.ensure_future(self.renew_leases(owner, now=self.clock(), lease_s=renewed[1]))
                self._renewals[owner] = renewal
            await asyncio.shield(renewal)
        return owner

    async def renew_leases(self, owner: str, *, now: datetime, lease_s: float) -> int:
        raise NotImplementedError

    @staticmethod
    def lost(job_id: int, owner: str) -> LeaseLostError:
        return LeaseLostError(job_id, owner)
