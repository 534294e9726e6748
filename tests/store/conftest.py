"""Store fixtures: one suite for every store. `store` is parameterised by the kind of store (a real SQLite file in
tmp_path today, opened the way the bot opens one); a second store adds its name to STORES and a branch to
`store_url`. Tests about one store's own file format ask for that store by name (`sqlite_store`).

The PostgreSQL store gets a fresh database per test (tests.pg); tests that need the host's clock for leases
(SQLite's leases are timed by the caller's clock, PostgreSQL's by the server's) are marked `host_clock` and run on
SQLite only, with server-clock counterparts in test_pg_leases.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.store import JobStore, PostgresJobStore, SqliteJobStore, open_store
from tests.pg import fresh_database
from tests.store.helpers import db_url

STORES = ["sqlite", "postgres"]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "atelier.db"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A `host_clock` test is not generated for a store whose leases run on the server's clock."""
    dropped = [item for item in items if item.get_closest_marker("host_clock") is not None
               and getattr(item, "callspec", None) is not None
               and item.callspec.params.get("store_kind", "sqlite") != "sqlite"]  # type: ignore[attr-defined]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped]


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(store_kind: str, db_path: Path) -> Iterator[str]:
    """The DATABASE_URL of a fresh, empty database of this kind (several connections may open it)."""
    if store_kind == "sqlite":
        yield db_url(db_path)
    elif store_kind == "postgres":
        with fresh_database() as url:
            yield url
    else:
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


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database of the test's own, for tests of that store alone."""
    with fresh_database() as url:
        yield url


@pytest.fixture
async def pg(pg_url: str) -> AsyncIterator[PostgresJobStore]:
    opened = await open_store(pg_url)
    assert isinstance(opened, PostgresJobStore)
    try:
        yield opened
    finally:
        await opened.close()
