"""Store fixtures: every test gets a real SQLite file in tmp_path, the same way the bot opens one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.store import SqliteJobStore, open_store
from tests.store.helpers import db_url


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "atelier.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteJobStore]:
    opened = await open_store(db_url(db_path))
    try:
        yield opened
    finally:
        await opened.close()
