"""Store fixtures: one suite for every store. `store` is parameterised by the kind of store (a real SQLite file in
tmp_path today, opened the way the bot opens one); a second store adds its name to STORES and a branch to
`store_url`. Tests about one store's own file format ask for that store by name (`sqlite_store`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.store import JobStore, SqliteJobStore, open_store
from tests.store.helpers import db_url

STORES = ["sqlite"]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "atelier.db"


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(store_kind: str, db_path: Path) -> str:
    """The DATABASE_URL of a fresh, empty database of this kind (several connections may open it)."""
    if store_kind == "sqlite":
        return db_url(db_path)
    raise AssertionError(f"no database for the store kind {store_kind!r}")


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[JobStore]:
    opened = await open_store(store_url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def sqlite_store(db_path: Path) -> AsyncIterator[SqliteJobStore]:
    opened = await open_store(db_url(db_path))
    try:
        yield opened
    finally:
        await opened.close()
