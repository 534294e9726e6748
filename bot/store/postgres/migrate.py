"""Migrations on PostgreSQL: the numbered files of bot/store/migrations/postgres/, applied in one transaction under
an advisory lock, so that many processes starting together apply each exactly once (the others wait, then find
nothing to do). DDL is transactional in PostgreSQL: a failed migration leaves the schema as it was."""

from __future__ import annotations

from bot.store.migrate import load_migrations, to_apply
from bot.store.postgres.connection import Connection
from bot.store.postgres.locks import MIGRATION_LOCK


async def schema_version(conn: Connection) -> int:
    found = await (await conn.execute("SELECT to_regclass('atelier_schema') IS NOT NULL AS present")).fetchone()
    if not found or not found["present"]:
        return 0
    row = await (await conn.execute("SELECT version FROM atelier_schema")).fetchone()
    return int(row["version"]) if row else 0


async def apply_migrations(conn: Connection, *, label: str, up_to: int | None = None) -> tuple[int, int]:
    """Bring the schema up to date; (version before, version after). Raises ConfigError for a database written
    by a newer Atelier."""
    migrations = load_migrations("postgres")
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", MIGRATION_LOCK)
        before = await schema_version(conn)
        pending = to_apply(migrations, current=before, up_to=up_to, label=label)
        if not pending:
            return before, before
        await conn.execute("CREATE TABLE IF NOT EXISTS atelier_schema (version integer NOT NULL)")
        for migration in pending:
            await conn.execute(migration.sql.encode())
        after = pending[-1].version
        await conn.execute("DELETE FROM atelier_schema")
        await conn.execute("INSERT INTO atelier_schema (version) VALUES (%s)", (after,))
    return before, after
