"""Opening a store: URLs, connection settings, migrations from empty, upgrades, and newer databases."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bot.errors import ConfigError, StoreUnreachableError
from bot.store import SqliteJobStore, open_store
from bot.store.base import JobStore
from bot.store.migrate import load_migrations
from bot.store.sqlite import split_statements
from tests.store.helpers import DEFAULTS, INTEGRITY_ERRORS, NOW, db_url, new_job

NEWEST = load_migrations()[-1].version


def read_sql(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Look at the file the way an operator would, with a separate plain connection."""
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


async def test_an_empty_file_gets_every_migration_and_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "there.db"
    store = await open_store(db_url(path))
    try:
        assert await store.schema_version() == NEWEST
    finally:
        await store.close()
    assert NEWEST >= 2
    assert read_sql(path, "SELECT version, name FROM schema_migrations ORDER BY version") == [
        (m.version, m.name) for m in load_migrations()]
    assert read_sql(path, "PRAGMA user_version") == [(NEWEST,)]
    assert read_sql(path, "PRAGMA journal_mode") == [("wal",)]


async def test_foreign_keys_are_enforced(store: JobStore) -> None:
    with pytest.raises(INTEGRITY_ERRORS):
        await store.enqueue_delivery(12345, "discord", now=NOW)


async def test_reopening_applies_nothing_twice(db_path: Path) -> None:
    for _ in range(2):
        store = await open_store(db_url(db_path))
        await store.close()
    assert read_sql(db_path, "SELECT COUNT(*) FROM schema_migrations") == [(NEWEST,)]


async def test_processes_starting_together_migrate_once(db_path: Path) -> None:
    stores = await asyncio.gather(*(open_store(db_url(db_path)) for _ in range(4)))
    for store in stores:
        assert await store.schema_version() == NEWEST
        await store.close()
    assert read_sql(db_path, "SELECT COUNT(*) FROM schema_migrations") == [(NEWEST,)]


def insert_old_job(path: Path, *, message_id: str | None = None, extra: str = "{}") -> int:
    """A job row as Atelier wrote it before schema 4 (no token): the columns of 0001, through a plain connection."""
    ts = NOW.isoformat(timespec="microseconds")
    with sqlite3.connect(path) as conn:
        cursor = conn.execute(
            "INSERT INTO jobs (scope, user_id, origin, operation, request, provider, state, cost, created_at,"
            " updated_at, deadline_at, channel_id, message_id, extra)"
            " VALUES ('guild:1', '100', 'discord', 'imagine', '{\"prompt\":\"a fox\"}', 'fal', 'succeeded', 1,"
            " ?, ?, ?, '55', ?, ?)", (ts, ts, ts, message_id, extra))
        assert cursor.lastrowid is not None
        return cursor.lastrowid


async def test_upgrade_from_schema_1_keeps_the_jobs(db_path: Path) -> None:
    old = await SqliteJobStore.open(str(db_path), migrate_up_to=1)
    await old.set_limit("guild:1", "scope", "", daily=7, concurrent=None)
    await old.close()
    job_id = insert_old_job(db_path)
    assert read_sql(db_path, "PRAGMA user_version") == [(1,)]
    assert read_sql(db_path, "SELECT name FROM sqlite_master WHERE name = 'guild_settings'") == []

    store = await open_store(db_url(db_path))
    try:
        assert await store.schema_version() == NEWEST
        job = await store.get_job(job_id)
        assert job is not None
        assert (job.subject, job.operation, job.request, job.state, job.cost, job.created_at) == \
            (new_job().subject, "imagine", {"prompt": "a fox"}, "succeeded", 1, NOW)
        # 0004: an old job gets a public token like a new one.
        assert len(job.token) == 20 and int(job.token, 16) >= 0
        usage = await store.usage(job.subject, defaults=DEFAULTS, now=NOW)
        assert (usage.limits.daily, usage.used_today) == (7, 1)
        # 0002 is really there: guild settings work on the upgraded file.
        await store.set_guild_setting(1, "channels", [10, 11], now=NOW)
        assert await store.guild_settings("1") == {"channels": [10, 11]}
    finally:
        await store.close()


async def test_a_database_from_a_newer_atelier_is_refused_untouched(db_path: Path) -> None:
    with sqlite3.connect(db_path) as conn:
        conn.execute(f"PRAGMA user_version = {NEWEST + 5}")
    with pytest.raises(ConfigError) as caught:
        await open_store(db_url(db_path))
    assert str(caught.value) == (
        f"The database at {db_path} was written by a newer Atelier (schema {NEWEST + 5}; this one knows up "
        f"to {NEWEST}). Upgrade Atelier or point DATABASE_URL elsewhere.")
    assert read_sql(db_path, "PRAGMA user_version") == [(NEWEST + 5,)]
    assert read_sql(db_path, "SELECT name FROM sqlite_master") == []


async def test_a_file_that_is_not_sqlite_is_refused(db_path: Path) -> None:
    db_path.write_bytes(b"these are not the pages you are looking for" * 100)
    with pytest.raises(ConfigError, match="is not an SQLite database"):
        await open_store(db_url(db_path))


async def test_relative_urls_are_relative_to_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = await open_store("sqlite:///data/atelier.db")
    await store.close()
    assert (tmp_path / "data" / "atelier.db").is_file()


async def test_memory_url() -> None:
    store = await open_store("sqlite:///:memory:")
    try:
        job = await store.create_job(new_job(), defaults=DEFAULTS, now=NOW)
        assert await store.get_job(job.id) == job
    finally:
        await store.close()


@pytest.mark.parametrize(("url", "expected"), [
    ("postgresql+asyncpg://atelier:hunter2@db/atelier", "postgresql\\+asyncpg:// scheme is not supported"),
    ("mysql://root:hunter2@localhost/atelier", "mysql:// scheme is not supported"),
    ("data/atelier.db", "this kind of URL is not supported"),
    ("sqlite://relative.db", "does not name an SQLite file"),
    ("sqlite:///", "must end in a file name"),
    ("sqlite:///data/", "must end in a file name"),
    ("sqlite:///data/atelier.db?mode=ro", "must end in a file name"),
])
async def test_unsupported_urls_are_config_errors_without_secrets(url: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as caught:
        await open_store(url)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
async def test_an_unreachable_server_is_named_without_its_password(scheme: str) -> None:
    # Port 1 on this machine: nothing listens there, so the connection is refused at once.
    with pytest.raises(StoreUnreachableError, match=r"127\.0\.0\.1:1/atelier") as caught:
        await open_store(f"{scheme}://atelier:hunter2@127.0.0.1:1/atelier")
    assert "hunter2" not in str(caught.value)


def test_statements_split_where_sqlite_says_they_end() -> None:
    script = """
        -- a comment; with a semicolon
        CREATE TABLE t (a TEXT DEFAULT 'x;y');  -- trailing comment
        CREATE TRIGGER tr AFTER INSERT ON t BEGIN
            UPDATE t SET a = 'z;'; DELETE FROM t WHERE a = '';
        END;
        -- nothing after this
    """
    statements = split_statements(script)
    assert len(statements) == 2
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")
    with pytest.raises(ValueError, match="incomplete statement"):
        split_statements("CREATE TABLE t (a TEXT)")


def test_shipped_migrations_are_numbered_without_gaps() -> None:
    migrations = load_migrations("sqlite")
    assert migrations == load_migrations()  # SQLite's folder is the default
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    for migration in migrations:
        assert split_statements(migration.sql)


async def test_upgrade_to_schema_4_moves_discord_state_into_posts_and_gives_every_job_a_token(db_path: Path) -> None:
    old = await SqliteJobStore.open(str(db_path), migrate_up_to=3)
    await old.close()
    delivered = insert_old_job(db_path, message_id="900", extra='{"status_message_id": "800", "posting": true}')
    dm_closed = insert_old_job(db_path, extra='{"status_message_id": "801", "delivery_note": "DMs closed"}')
    plain = insert_old_job(db_path)
    mid_post = insert_old_job(db_path, extra='{"status_message_id": "802", "posting": true}')

    store = await open_store(db_url(db_path))
    try:
        tokens = {(await store.get_job(j)).token for j in (delivered, dm_closed, plain)}  # type: ignore[union-attr]
        assert len(tokens) == 3 and all(len(t) == 20 for t in tokens)
        posts = await store.posts_of(delivered)
        assert [(p.kind, p.message_id, p.channel_id, p.legacy) for p in posts] == \
            [("status", "800", "55", True), ("result", "900", "55", True)]
        assert len({p.nonce for p in posts}) == 2 and all(len(p.nonce) <= 25 for p in posts)
        # A reaction on either message finds its job; the old result column stays as it was.
        assert (await store.job_by_message(800)).id == delivered  # type: ignore[union-attr]
        assert (await store.job_by_message("900")).id == delivered  # type: ignore[union-attr]
        assert [(p.kind, p.message_id, p.note) for p in await store.posts_of(dm_closed)] == \
            [("status", "801", None), ("result", None, "DMs closed")]
        assert await store.posts_of(plain) == []
        # The previous version had begun posting this result and never recorded it: the next attempt looks first.
        assert [(p.kind, p.message_id, p.settled, p.legacy) for p in await store.posts_of(mid_post)] == \
            [("status", "802", True, True), ("result", None, False, True)]
        post, new = await store.open_post(mid_post, "result", channel_id=55)  # type: ignore[arg-type]
        assert not new and post.legacy
        assert await store.job_by_message(999) is None
    finally:
        await store.close()


def test_no_migration_file_is_left_beside_the_store_folders() -> None:
    from importlib import resources

    root = resources.files("bot.store.migrations")
    assert not [e.name for e in root.iterdir() if e.name.endswith(".sql")]
    assert [e.name for e in root.joinpath("sqlite").iterdir() if e.name.endswith(".sql")]
