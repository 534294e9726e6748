"""Values shared by the store tests and the quota worker process (no pytest import: the worker starts fast)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bot.store import NewJob, Origin, QuotaLimits, Subject

# A fixed clock: the store never reads the time itself, so tests pass `now` and stay exact.
NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
DEFAULTS = QuotaLimits(daily=25, concurrent=3)
GENEROUS = QuotaLimits(daily=1000, concurrent=1000)
ALICE = Subject.member(guild_id=1, user_id=100)
BOB = Subject.member(guild_id=1, user_id=200)


# What a store raises when the database's own constraints refuse a write (a foreign key, say).
INTEGRITY_ERRORS = (sqlite3.IntegrityError, psycopg.errors.IntegrityError)


def db_url(path: Path) -> str:
    return f"sqlite:///{path}"  # tmp_path is absolute, so this is the sqlite://// form


def new_job(subject: Subject = ALICE, *, cost: int = 1, origin: Origin = Origin.DISCORD,
            **overrides: Any) -> NewJob:
    fields: dict[str, Any] = {"subject": subject, "origin": origin, "operation": "imagine",
                              "request": {"prompt": "a lighthouse at dusk", "size": "square_hd"},
                              "provider": "fal", "cost": cost}
    fields.update(overrides)
    return NewJob(**fields)
