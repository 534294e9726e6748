"""The job store: what Atelier remembers about jobs, deliveries and quotas.

Callers depend on `JobStore` (bot.store.base) and the plain values in bot.store.models; `open_store` picks the
implementation from DATABASE_URL: bot.store.sqlite (one machine) or bot.store.postgres (many). Only those two
write SQL.
"""

from __future__ import annotations

import re

from bot.errors import ConfigError
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
from bot.store.sqlite import BUSY_TIMEOUT_S, SqliteJobStore, sqlite_path

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


async def open_store(database_url: str, *, busy_timeout_s: float = BUSY_TIMEOUT_S,
                     pool_size: int = DEFAULT_POOL_SIZE) -> JobStore:
    """Open the store DATABASE_URL names, creating and migrating it as needed. `busy_timeout_s`: how long a
    call outside a running job waits for another program's lock (DATABASE_BUSY_TIMEOUT_S).

    Error messages name the URL's scheme at most: a server URL may carry a password.
    """
    match = _SCHEME.match(database_url)
    scheme = match[1].lower() if match else ""
    if scheme == "sqlite":
        return await SqliteJobStore.open(sqlite_path(database_url), busy_timeout_s=busy_timeout_s)
    if scheme in ("postgresql", "postgres"):
        return await PostgresJobStore.open(database_url, pool_size=pool_size)
    described = f"the {scheme}:// scheme is" if scheme else "this kind of URL is"
    raise ConfigError(f"DATABASE_URL: {described} not supported; use an SQLite file such as "
                      "sqlite:///data/atelier.db, or a PostgreSQL server: postgresql://user@host:5432/atelier.")


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
    "open_store",
    "refund_due",
]
