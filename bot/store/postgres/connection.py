"""Connections to PostgreSQL: one pool per process, every connection in autocommit (every transaction is one we
open), rows as dicts, and a timeout on everything that waits for the server."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from bot.errors import StoreUnreachableError

CONNECT_TIMEOUT_S = 5
# A statement that runs longer than this is a bug or a stuck lock, not work: it fails instead of hanging a job.
STATEMENT_TIMEOUT_MS = 30_000
POOL_WAIT_S = 30.0

Connection = psycopg.AsyncConnection[DictRow]


def describe(database_url: str) -> str:
    """host:port/dbname of a URL, for messages: never its password or user."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(database_url)
    except psycopg.ProgrammingError:
        return "the PostgreSQL server in DATABASE_URL"
    host = info.get("host") or "localhost"
    port = info.get("port") or "5432"
    return f"{host}:{port}/{info.get('dbname') or ''}"


def connect_kwargs() -> dict[str, object]:
    return {"autocommit": True, "row_factory": dict_row, "connect_timeout": CONNECT_TIMEOUT_S,
            "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"}


async def open_pool(database_url: str, *, max_size: int) -> AsyncConnectionPool[Connection]:
    try:
        # One connection first: an unreachable server fails here at once, where the pool would keep retrying.
        probe = await connect(database_url)
    except psycopg.OperationalError as exc:
        raise StoreUnreachableError(f"cannot reach PostgreSQL at {describe(database_url)}: is the server "
                                    "running, and does DATABASE_URL name it?") from exc
    await probe.close()
    # No reset callback: pooled connections take only transaction-level advisory locks (released at commit or
    # rollback) and never LISTEN (the presence connection, outside the pool, does both for the process), so a
    # connection goes back as it came; the pool itself rolls back one returned inside a transaction. A reset
    # would cost a round trip per borrow, made by the pool's few workers: under load, every borrower waits.
    pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
        database_url, min_size=1, max_size=max_size, kwargs=connect_kwargs(), open=False,
        timeout=POOL_WAIT_S, name="atelier", connection_class=psycopg.AsyncConnection[DictRow])
    try:
        await pool.open(wait=True, timeout=CONNECT_TIMEOUT_S * 2)
    except (PoolTimeout, psycopg.OperationalError) as exc:
        await pool.close()
        raise StoreUnreachableError(f"cannot reach PostgreSQL at {describe(database_url)}: is the server "
                                    "running, and does DATABASE_URL name it?") from exc
    return pool


async def connect(database_url: str) -> Connection:
    """A connection of its own, outside the pool (the presence lock and LISTEN live on one)."""
    return await psycopg.AsyncConnection.connect(database_url, **connect_kwargs())  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def unreachable_as_error(database_url: str) -> AsyncIterator[None]:
    try:
        yield
    except (PoolTimeout, psycopg.OperationalError) as exc:
        raise StoreUnreachableError(f"cannot reach PostgreSQL at {describe(database_url)}") from exc
