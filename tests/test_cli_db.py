"""`atelier db migrate`, run as the real `python -m bot` process on an SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

from bot.store.migrate import load_migrations
from tests.test_cli import clean_env

NEWEST = load_migrations("sqlite")[-1].version


async def migrate(cwd: Path, database_url: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "db", "migrate", cwd=cwd,
                                                env=clean_env(DATABASE_URL=database_url),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def schema_of(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


async def test_a_fresh_file_gets_every_migration_then_there_is_nothing_to_do(tmp_path: Path) -> None:
    db = tmp_path / "data" / "atelier.db"
    code, out, err = await migrate(tmp_path, "sqlite:///data/atelier.db")
    assert (code, err) == (0, "")
    assert out == f"applied {NEWEST} migration(s): schema 0 -> {NEWEST}\n"
    assert schema_of(db) == NEWEST
    assert {"jobs", "deliveries", "discord_posts", "schema_migrations"} <= tables(db)

    code, out, err = await migrate(tmp_path, "sqlite:///data/atelier.db")
    assert (code, out, err) == (0, f"nothing to do: schema {NEWEST}\n", "")


async def test_an_older_schema_is_brought_up_to_date(tmp_path: Path) -> None:
    from bot.store.sqlite import SqliteJobStore

    db = tmp_path / "old.db"
    async with await SqliteJobStore.open(str(db), migrate_up_to=2):
        pass
    code, out, _ = await migrate(tmp_path, f"sqlite:///{db}")
    assert code == 0
    assert out == f"applied {NEWEST - 2} migration(s): schema 2 -> {NEWEST}\n"
    assert schema_of(db) == NEWEST


async def test_a_file_written_by_a_newer_atelier_is_refused_in_one_line_and_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "atelier.db"
    assert (await migrate(tmp_path, f"sqlite:///{db}"))[0] == 0
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {NEWEST + 1}")
    before = tables(db)

    code, out, err = await migrate(tmp_path, f"sqlite:///{db}")
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and "written by a newer Atelier" in err
    assert f"schema {NEWEST + 1}" in err and f"up to {NEWEST}" in err
    assert schema_of(db) == NEWEST + 1 and tables(db) == before


async def test_an_unreachable_database_is_one_line_and_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the database's directory should be")

    code, out, err = await migrate(tmp_path, f"sqlite:///{blocker}/atelier.db")
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and "cannot be opened" in err and "Traceback" not in err
    assert blocker.read_text() == "a file where the database's directory should be"


async def test_a_file_that_is_not_a_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    junk = tmp_path / "notes.db"
    junk.write_bytes(b"these are my notes, not a database" * 100)

    code, out, err = await migrate(tmp_path, f"sqlite:///{junk}")
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and "is not an SQLite database" in err
    assert junk.read_bytes() == b"these are my notes, not a database" * 100


async def test_a_server_url_never_shows_its_password(tmp_path: Path) -> None:
    # Port 1: nothing listens there, so whichever way server URLs are taken, nothing is changed anywhere.
    code, out, err = await migrate(tmp_path, "postgresql://operator:hunter2-secret@127.0.0.1:1/atelier")
    assert (code, out) == (2, "")
    assert err.startswith("atelier: ") and err.count("\n") == 1
    assert "hunter2-secret" not in err and "operator" not in err
