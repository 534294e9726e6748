"""The job store: what Atelier remembers about jobs, deliveries and quotas.

Callers depend on `JobStore` (bot.store.base) and the plain values in bot.store.models; `open_store` picks the
implementation from DATABASE_URL: bot.store.sqlite (one machine) or bot.store.postgres (many). Only those two
write SQL.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from typing import NoReturn

from bot.errors import ConfigError, StoreUnreachableError
from bot.store.base import JobStore
from bot.store.models import (
    IN_FLIGHT_STATES,
    TERMINAL_STATES,
    Delivery,
    DeliveryState,
    Job,
    JobState,
    NewJob,
    Origin,
    QuotaLimits,
    QuotaUsage,
    StoredOutput,
    Subject,
)
from bot.store.postgres import PostgresJobStore
from bot.store.postgres.store import DEFAULT_POOL_SIZE
from bot.store.refunds import images_charged, refund_due
from bot.store.sqlite import BUSY_TIMEOUT_S, SqliteJobStore, peek_schema_version, sqlite_path

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
POSTGRES_SCHEMES = ("postgresql", "postgres")


def _scheme(database_url: str) -> str:
    match = _SCHEME.match(database_url)
    return match[1].lower() if match else ""


def _unsupported(scheme: str) -> NoReturn:
    described = f"the {scheme}:// scheme is" if scheme else "this kind of URL is"
    raise ConfigError(f"DATABASE_URL: {described} not supported; use an SQLite file such as "
                      "sqlite:///data/atelier.db, or a PostgreSQL server: postgresql://user@host:5432/atelier.")


async def open_store(database_url: str, *, busy_timeout_s: float = BUSY_TIMEOUT_S,
                     pool_size: int = DEFAULT_POOL_SIZE) -> JobStore:
    """Open the store DATABASE_URL names, creating and migrating it as needed. `busy_timeout_s`: how long a
    call outside a running job waits for another program's lock (DATABASE_BUSY_TIMEOUT_S).

    Error messages name the URL's scheme at most: a server URL may carry a password.
    """
    scheme = _scheme(database_url)
    if scheme == "sqlite":
        return await SqliteJobStore.open(sqlite_path(database_url), busy_timeout_s=busy_timeout_s)
    if scheme in POSTGRES_SCHEMES:
        return await PostgresJobStore.open(database_url, pool_size=pool_size)
    _unsupported(scheme)


async def migrate_database(database_url: str) -> tuple[int, int]:
    """Bring the database DATABASE_URL names (created if need be) up to this version's schema, as
    `atelier db migrate` does before the processes start. Returns the schema version (before, after).

    Raises ConfigError for a database written by a newer Atelier (or a URL no store takes), and
    StoreUnreachableError when the database cannot be opened at all. Messages name the URL's scheme at most.
    """
    scheme = _scheme(database_url)
    if scheme == "sqlite":
        return await _migrate_sqlite(sqlite_path(database_url))
    if scheme in POSTGRES_SCHEMES:
        return await PostgresJobStore.migrate(database_url)
    _unsupported(scheme)


async def _migrate_sqlite(path: str) -> tuple[int, int]:
    try:
        before = await asyncio.to_thread(peek_schema_version, path)
        # Opening migrates (and refuses a newer schema with the ConfigError that says so).
        async with await SqliteJobStore.open(path) as store:
            return before, await store.schema_version()
    except sqlite3.DatabaseError as exc:
        if exc.sqlite_errorcode == sqlite3.SQLITE_NOTADB:
            raise ConfigError(f"{path} is not an SQLite database; point DATABASE_URL at another file.") from exc
        raise StoreUnreachableError(f"DATABASE_URL: the SQLite file {path} cannot be opened ({exc}).") from exc
    except OSError as exc:  # its directory cannot be made: a file stands in the way, no permission, read-only
        where = f" at {exc.filename}" if exc.filename else ""
        raise StoreUnreachableError(f"DATABASE_URL: the SQLite file {path} cannot be opened or created: "
                                    f"{exc.strerror or exc}{where}.") from exc


__all__ = [
    "IN_FLIGHT_STATES",
    "TERMINAL_STATES",
    "Delivery",
    "DeliveryState",
    "Job",
    "JobState",
    "JobStore",
    "NewJob",
    "Origin",
    "PostgresJobStore",
    "QuotaLimits",
    "QuotaUsage",
    "SqliteJobStore",
    "StoredOutput",
    "Subject",
    "images_charged",
    "migrate_database",
    "open_store",
    "refund_due",
]
