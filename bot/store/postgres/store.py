"""PostgresJobStore: the JobStore on a PostgreSQL server, for many processes on many hosts.

Build it with bot.store.open_store (DATABASE_URL=postgresql://...). Beyond JobStore it offers what only a shared
store can (bot.store.base.SharedJobStore): claiming batches of work with SKIP LOCKED, global provider slots, the
count of live processes, the webhook inbox, and notifications from other processes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from types import TracebackType

from psycopg_pool import AsyncConnectionPool

from bot.store.channels import CHANNELS, JOBS_CHANNEL
from bot.store.postgres.connection import Connection, describe, open_pool, unreachable_as_error
from bot.store.postgres.gateway import PgGateway
from bot.store.postgres.jobs import PgJobs
from bot.store.postgres.members import PgMembers
from bot.store.postgres.migrate import apply_migrations, schema_version
from bot.store.postgres.presence import PROCESS_ALIVE, Presence
from bot.store.postgres.records import PgRecords
from bot.store.rows import utcnow

log = logging.getLogger(__name__)

DEFAULT_POOL_SIZE = 10


class PostgresJobStore(PgJobs, PgRecords, PgMembers, PgGateway):
    shared = True  # other processes, on other hosts, work on the same jobs

    def __init__(self, pool: AsyncConnectionPool[Connection], database_url: str, *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        super().__init__()
        self._pool = pool
        self._url = database_url
        self.clock = clock
        self.label = describe(database_url)
        self._subscribers: dict[str, list[Callable[[str], None]]] = {c: [] for c in CHANNELS}
        self._on_reconnect: list[Callable[[], None]] = []
        self._presence: Presence | None = None

    @classmethod
    async def open(cls, database_url: str, *, pool_size: int = DEFAULT_POOL_SIZE,
                   migrate_up_to: int | None = None) -> PostgresJobStore:
        pool = await open_pool(database_url, max_size=pool_size)
        try:
            async with unreachable_as_error(database_url), pool.connection() as conn:
                await apply_migrations(conn, label=describe(database_url), up_to=migrate_up_to)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, database_url)

    @classmethod
    async def migrate(cls, database_url: str) -> tuple[int, int]:
        """Apply the migrations and close again (`atelier db migrate`): the schema version (before, after)."""
        pool = await open_pool(database_url, max_size=2)
        try:
            async with unreachable_as_error(database_url), pool.connection() as conn:
                return await apply_migrations(conn, label=describe(database_url))
        finally:
            await pool.close()

    async def close(self) -> None:
        if self._presence is not None:
            await self._presence.close()
            self._presence = None
        await self._pool.close()

    async def __aenter__(self) -> PostgresJobStore:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def schema_version(self) -> int:
        async with self._connection() as conn:
            return await schema_version(conn)

    async def ping(self) -> None:
        """Raises when the server cannot be reached."""
        async with unreachable_as_error(self._url):
            await self._one("SELECT 1 AS ok")

    # --- presence and notifications ------------------------------------------------------------------------

    async def join(self, owner: str, *, host: str, pid: int) -> None:
        """Register this process as `owner` and hold its liveness lock: its jobs are taken over the moment it
        dies, by any process on any host. Starts listening for the other processes' notifications."""
        if self._presence is not None:
            return
        presence = Presence(self._url, CHANNELS, on_notify=self._notified, on_reconnect=self._reconnected)
        async with unreachable_as_error(self._url):
            await presence.start(owner, host=host, pid=pid)
        self._presence = presence

    def subscribe(self, channel: str, callback: Callable[[str], None]) -> None:
        """Call `callback(payload)` for each notification on `channel` (one of CHANNELS)."""
        self._subscribers[channel].append(callback)

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        """Call `callback()` after the notification connection was lost and restored: what was sent meanwhile
        is lost, so look again."""
        self._on_reconnect.append(callback)

    def _notified(self, channel: str, payload: str) -> None:
        for callback in self._subscribers.get(channel, []):
            try:
                callback(payload)
            except Exception:
                log.exception("handling a %s notification failed", channel)

    def _reconnected(self) -> None:
        for callback in self._on_reconnect:
            try:
                callback()
            except Exception:
                log.exception("rescanning after a reconnect failed")

    async def announce_free_work(self) -> None:
        """Tell every process that work is free to be claimed (a new job, jobs handed back)."""
        await self._count("SELECT pg_notify(%s, '')", (JOBS_CHANNEL,))

    async def prune_processes(self) -> int:
        """Forget processes that are gone and hold no job's lease."""
        return await self._count(
            f"DELETE FROM processes p WHERE NOT {PROCESS_ALIVE}"  # noqa: S608 - constant SQL fragments
            " AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.lease_owner = p.owner)")
