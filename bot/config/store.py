"""Storage and quotas: where jobs are kept, how long a locked database is waited for, the members' allowances,
and how the runner holds and hands over its jobs."""

from __future__ import annotations

from pydantic import Field

from bot.config.area import Area


class StoreSettings(Area):
    database_url: str = "sqlite:///data/atelier.db"
    # How long a new command or setting waits while another program holds the database locked (a backup, a
    # VACUUM) before it is refused as "busy"; a job already running waits until its own deadline.
    database_busy_timeout_s: float = Field(default=30.0, gt=0)
    # Connections each process may hold to a PostgreSQL server (an SQLite file uses one).
    database_pool_size: int = Field(default=10, ge=2, le=200)
    retention_days: float = Field(default=7.0, gt=0)
    lease_seconds: float = Field(default=30.0, gt=0)
    # Failed attempts to deliver one finished job before it is marked undeliverable (about 76 minutes of
    # retries with the default backoff of 2 s, 5 s, 15 s, 60 s, then every 5 minutes).
    delivery_max_attempts: int = Field(default=20, ge=1)


class QuotaSettings(Area):
    quota_daily: int = Field(default=25, ge=0)
    quota_concurrent: int = Field(default=3, ge=1)
