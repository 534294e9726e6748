"""This process's presence on the database, and what other processes tell it.

One connection of its own (not pooled) holds the session advisory lock (PROCESS_CLASS, processes.id) for the life
of the process and LISTENs on Atelier's channels. When the process dies, on any host, the server drops the
connection and with it the lock: every other process sees that in pg_locks at once, without waiting for leases to
lapse. When the connection breaks (a PostgreSQL restart drops every listener), it reconnects with backoff, takes
the lock and listens again, then asks for a rescan: notifications sent while nobody listened are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

import psycopg

from bot.store.postgres.connection import Connection, connect
from bot.store.postgres.locks import PROCESS_CLASS
from bot.tasks import TaskSet

log = logging.getLogger(__name__)

RECONNECT_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)
# SQL: the process row `p` holds its liveness lock right now.
PROCESS_ALIVE = (
    "EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"  # noqa: S608 - constant SQL fragments
    f" AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    f" AND l.classid = {PROCESS_CLASS} AND l.objid = p.id::bigint::oid AND l.objsubid = 2)")

Notified = Callable[[str, str], None]  # (channel, payload)


class Presence:
    def __init__(self, database_url: str, channels: Sequence[str], *, on_notify: Notified,
                 on_reconnect: Callable[[], None]) -> None:
        self._url = database_url
        self._channels = tuple(channels)
        self._on_notify = on_notify
        self._on_reconnect = on_reconnect
        self._conn: Connection | None = None
        self._tasks = TaskSet("presence")
        self.process_id: int | None = None
        self.connected = asyncio.Event()

    async def start(self, owner: str, *, host: str, pid: int) -> int:
        """Register this process as `owner`, take its lock and listen. Returns its process id in the database."""
        conn = await connect(self._url)
        try:
            row = await (await conn.execute(
                "INSERT INTO processes (owner, host, pid) VALUES (%s, %s, %s)"
                " ON CONFLICT (owner) DO UPDATE SET host = excluded.host, pid = excluded.pid RETURNING id",
                (owner, host, pid))).fetchone()
            assert row is not None
            self.process_id = int(row["id"])
            await self._hold(conn)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        self.connected.set()
        self._tasks.spawn(self._listen(), name="listen")
        return self.process_id

    async def _hold(self, conn: Connection) -> None:
        assert self.process_id is not None
        await conn.execute("SELECT pg_advisory_lock(%s, %s)", (PROCESS_CLASS, self.process_id))
        for channel in self._channels:
            await conn.execute(f'LISTEN "{channel}"')  # channel names are Atelier's own constants

    async def _listen(self) -> None:
        attempt = 0
        while True:
            conn = self._conn
            if conn is not None:
                try:
                    async for note in conn.notifies():
                        attempt = 0
                        self._on_notify(note.channel, note.payload)
                except psycopg.OperationalError as exc:
                    log.warning("lost the database connection that holds this process's presence (%s); "
                                "reconnecting", exc)
                self.connected.clear()
                self._conn = None
                await _close_quietly(conn)
            await asyncio.sleep(RECONNECT_BACKOFF_S[min(attempt, len(RECONNECT_BACKOFF_S) - 1)])
            attempt += 1
            try:
                fresh = await connect(self._url)
                await self._hold(fresh)
            except psycopg.OperationalError as exc:
                log.warning("reconnecting to the database: %s", exc)
                continue
            self._conn = fresh
            self.connected.set()
            log.info("presence on the database restored; rescanning for work and webhook calls")
            self._on_reconnect()

    async def close(self) -> None:
        await self._tasks.close()
        if self._conn is not None:
            await _close_quietly(self._conn)  # the server drops the lock with the connection
            self._conn = None


async def _close_quietly(conn: Connection) -> None:
    with contextlib.suppress(psycopg.Error):  # closing a broken connection
        await conn.close()
