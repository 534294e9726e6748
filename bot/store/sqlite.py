"""The SQLite job store. This is the only module in Atelier that writes SQL.

How it stays correct when several coroutines, connections or processes share one database file:

* The connection runs in autocommit mode (`isolation_level=None`), so every transaction is one we opened.
* Every transaction that writes starts with `BEGIN IMMEDIATE`, which takes SQLite's write lock before the
  first read. A quota check and the insert it guards therefore see the same data as every other writer, in
  this process or another one. (A plain `BEGIN` would read first and upgrade later; the upgrade is where
  SQLite gives up with "database is locked" without waiting, and where two checks could both pass.)
* Single statements that decide for themselves (compare-and-set UPDATEs) need no explicit transaction.
* An `asyncio.Lock` serialises this store's own coroutines: they share one connection, and a coroutine's
  statements must never land inside another coroutine's open transaction.
* WAL journal mode lets readers carry on while one process writes; `busy_timeout` makes a writer wait
  for the lock instead of failing at once.
* A lock held for longer (a backup, a VACUUM, a stuck process) must not kill a paid job: every public call is
  retried with backoff while SQLite says the database is busy, for as long as the calling task may wait
  (bot.store.patience: a running job until its deadline, anything else DATABASE_BUSY_TIMEOUT_S), then fails
  with StoreBusyError. SQLite's own wait is kept short (BUSY_ATTEMPT_S) so that the wait stays in asyncio, where
  Ctrl-C and cancellation reach it. Re-running a call is safe: a busy error means its transaction never began
  (BEGIN IMMEDIATE takes the lock first) or its single statement did not apply.

Timestamps are stored as ISO-8601 UTC text of one fixed width ("2025-01-31T09:15:00.000000+00:00"), so text
comparison in SQL is time comparison and the file stays readable in the sqlite3 shell. Every datetime read
back is timezone-aware UTC; a naive datetime passed in is refused rather than guessed at.

Lists in WHERE clauses are bound as one JSON array (`IN (SELECT value FROM json_each(?))`), so no statement
text is ever built from values. The only statement text built at run time is the SET list of `update_job`
and `transition`, from column names in the fixed `UPDATABLE` whitelist.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import aiosqlite

from bot.errors import ConfigError
from bot.money.caps import BUDGET_KEY, CapState, GuildBudget, first_exceeded, month_bounds
from bot.money.caps import day_bounds as _utc_day
from bot.operations import Operation
from bot.store import busy, leases, quota, states
from bot.store.migrate import load_migrations, to_apply
from bot.store.models import (
    IN_FLIGHT_STATES,
    TERMINAL_STATES,
    WITHHOLD_NSFW_KEY,
    Delivery,
    DeliveryState,
    DiscordPost,
    Job,
    JobSpend,
    JobState,
    NewJob,
    Origin,
    PostKind,
    QuotaLimits,
    QuotaUsage,
    SpendRow,
    StoredOutput,
    Subject,
)
from bot.store.quota import day_bounds
from bot.store.rows import (
    JOB_SELECT,
    decode_outputs,
    delivery_from_row,
    dt,
    dt_or_none,
    encode_extra,
    encode_outputs,
    job_from_row,
    new_nonce,
    new_token,
    post_from_row,
    set_clause,
    text_or_none,
    to_json,
    ts,
    utcnow,
)
from bot.store.sqlite_members import SqliteMembers

# How long a call outside a running job waits for another program's lock before StoreBusyError (a running job
# waits until its deadline). Transactions here last milliseconds; this only runs out when something outside holds
# the file (a backup, a VACUUM, a stuck process). DATABASE_BUSY_TIMEOUT_S overrides it.
BUSY_TIMEOUT_S = 30.0
# SQLite's own wait within one attempt; the retries between attempts run in asyncio, so they can be cancelled.
BUSY_ATTEMPT_S = 0.5
WAL_SWITCH_RETRY_S = 0.01
# Long provider error texts are cut: the outbox row is for the operator, not a log archive.
MAX_DELIVERY_ERROR_CHARS = 2000

# Job rows as callers see them: the columns, and whether the outbox gave up delivering the job.
# ('undeliverable' is DeliveryState.UNDELIVERABLE.)
_JOB_SELECT = JOB_SELECT

# Bound as JSON arrays for `IN (SELECT value FROM json_each(?))`; sorted so statements are reproducible.
_TERMINAL_JSON = json.dumps(sorted(s.value for s in TERMINAL_STATES))
_IN_FLIGHT_JSON = json.dumps(sorted(s.value for s in IN_FLIGHT_STATES))
_ALL_STATES_JSON = json.dumps(sorted(s.value for s in JobState))


# --- migrations --------------------------------------------------------------------------------------------

def split_statements(script: str) -> list[str]:
    """One migration file into statements, using SQLite's own idea of a complete statement (semicolons in
    strings, comments and trigger bodies do not end one). The sqlite3 module runs one statement per call,
    and executescript() would commit behind our back."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    leftover = [ln for ln in buffer.splitlines() if ln.strip() and not ln.strip().startswith("--")]
    if leftover:
        raise ValueError(f"migration ends with an incomplete statement: {leftover[0]!r}")
    return statements


_CREATE_SCHEMA_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL
)"""


async def _user_version(db: aiosqlite.Connection) -> int:
    rows = list(await db.execute_fetchall("PRAGMA user_version"))
    return int(rows[0][0])


def peek_schema_version(path: str) -> int:
    """The schema version of an existing file without changing anything (read-only, no WAL switch, no
    migration); 0 when there is no file yet. Blocking: call it in a thread."""
    if path == ":memory:" or not Path(path).is_file():
        return 0
    db = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_ATTEMPT_S)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


async def apply_migrations(db: aiosqlite.Connection, *, label: str, up_to: int | None = None) -> int:
    """Bring the schema up to `up_to` (default: the newest file). Returns the version reached.

    The version is kept in `PRAGMA user_version` (readable before any table exists, and changed atomically
    with the migration's own statements); `schema_migrations` keeps when each step was applied.
    """
    current = await _user_version(db)
    for migration in to_apply(load_migrations("sqlite"), current=current, up_to=up_to, label=label):
        await db.execute("BEGIN IMMEDIATE")
        try:
            # Another process starting at the same time may have applied it while we waited for the lock.
            current = await _user_version(db)
            if current >= migration.version:
                await db.execute("ROLLBACK")
                continue
            await db.execute(_CREATE_SCHEMA_MIGRATIONS)
            for statement in split_statements(migration.sql):
                await db.execute(statement)
            await db.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                              (migration.version, migration.name, ts(datetime.now(UTC))))
            # PRAGMA takes no bound parameters; the value is an int parsed from a file name we ship.
            await db.execute(f"PRAGMA user_version = {int(migration.version)}")
            await db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.OperationalError):
                await db.execute("ROLLBACK")
            raise
        current = migration.version
    return max(current, await _user_version(db))


async def _enable_wal(db: aiosqlite.Connection, *, wait_s: float) -> None:
    """Switch the file to WAL (a no-op when it already is).

    Switching a new file needs an exclusive lock, and when several processes open the same new file at once
    SQLite answers "database is locked" straight away instead of waiting in the busy handler; so wait here.
    """
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + wait_s
    while True:
        try:
            await db.execute_fetchall("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            if not busy.is_busy(exc):
                raise
            if loop.time() > give_up_at:
                raise busy.busy_error(wait_s) from exc
            await asyncio.sleep(WAL_SWITCH_RETRY_S)
        else:
            return


def sqlite_path(database_url: str) -> str:
    """The file a `sqlite:///...` URL names: `sqlite:///data/atelier.db` is relative to the working
    directory, `sqlite:////srv/atelier.db` is absolute, `sqlite:///:memory:` is a private in-memory database."""
    prefix = "sqlite:///"
    example = "use sqlite:///data/atelier.db (relative) or sqlite:////abs/path/atelier.db (absolute)"
    if not database_url.startswith(prefix):
        raise ConfigError(f"DATABASE_URL does not name an SQLite file; {example}.")
    path = database_url[len(prefix):]
    if not path or path.endswith("/") or "?" in path:
        raise ConfigError(f"DATABASE_URL must end in a file name, with no ?options; {example}.")
    return path


# --- the store ---------------------------------------------------------------------------------------------

@busy.patient_methods
class SqliteJobStore(SqliteMembers):
    """`JobStore` on one SQLite file. Build it with `bot.store.open_store` (or `SqliteJobStore.open`)."""

    def __init__(self, db: aiosqlite.Connection, path: str, *, clock: Callable[[], datetime] = utcnow,
                 busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self._db = db
        self.path = path
        self._lock = asyncio.Lock()
        # The time for writes whose caller passes none (the Discord layer never reads a clock of its own).
        self.clock = clock
        self.busy_timeout_s = busy_timeout_s

    @classmethod
    async def open(cls, path: str, *, migrate_up_to: int | None = None,
                   busy_timeout_s: float = BUSY_TIMEOUT_S) -> SqliteJobStore:
        """Open (creating if needed) the database file and bring its schema up to date.

        `migrate_up_to` stops at an older schema version; it exists for upgrade tests only. `busy_timeout_s`:
        how long a call outside a running job waits for another program's lock (StoreBusyError after that).
        """
        if path != ":memory:":
            await asyncio.to_thread(Path(path).parent.mkdir, parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None, timeout=BUSY_ATTEMPT_S)
        try:
            db.row_factory = sqlite3.Row
            try:
                # The first statement that reads the file: a file that is not SQLite fails here.
                await _enable_wal(db, wait_s=busy_timeout_s)
            except sqlite3.DatabaseError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_NOTADB:
                    raise
                raise ConfigError(f"{path} is not an SQLite database; point DATABASE_URL at another "
                                  f"file.") from exc
            # NORMAL is safe in WAL mode: a power cut can lose the last commits, never corrupt the file.
            await db.execute("PRAGMA synchronous = NORMAL")
            await db.execute("PRAGMA foreign_keys = ON")
            await busy.patiently(lambda: apply_migrations(db, label=path, up_to=migrate_up_to),
                             default_s=busy_timeout_s)
        except BaseException:
            await db.close()
            raise
        return cls(db, path, busy_timeout_s=busy_timeout_s)

    async def close(self) -> None:
        async with self._lock:
            await self._db.close()

    async def __aenter__(self) -> SqliteJobStore:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    shared = False  # processes on one machine only: pids and leases tell who is alive

    async def schema_version(self) -> int:
        async with self._lock:
            return await _user_version(self._db)

    async def ping(self) -> None:
        async with self._lock:
            await self._db.execute_fetchall("SELECT 1")

    async def join(self, owner: str, *, host: str, pid: int) -> None:
        """Nothing to register: a lease names its host and pid, which is all that one machine needs."""

    # --- plumbing --------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _transaction(self, *, write: bool = True) -> AsyncIterator[aiosqlite.Connection]:
        """A transaction of this coroutine alone. write=True takes the database's write lock first."""
        async with self._lock:
            db = self._db
            try:
                await db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                yield db
                await db.execute("COMMIT")
            except BaseException:
                # Also reached when BEGIN itself failed (lock wait timed out) or we were cancelled part way;
                # then there may be no transaction to roll back, which is fine.
                with contextlib.suppress(sqlite3.OperationalError):
                    await db.execute("ROLLBACK")
                raise

    @staticmethod
    async def _rows(db: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return list(await db.execute_fetchall(sql, params))

    @staticmethod
    async def _changes(db: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> int:
        cursor = await db.execute(sql, params)
        try:
            return cursor.rowcount
        finally:
            await cursor.close()

    async def _job(self, db: aiosqlite.Connection, job_id: int) -> Job | None:
        rows = await self._rows(db, f"{_JOB_SELECT} WHERE id = ?", (job_id,))
        return job_from_row(rows[0]) if rows else None

    # --- jobs ------------------------------------------------------------------------------------------

    async def create_job(self, new: NewJob, *, defaults: QuotaLimits, now: datetime) -> Job:
        if new.cost < 0:
            raise ValueError(f"cost must be 0 or more, not {new.cost}")
        if not new.deadline_s > 0:
            raise ValueError(f"deadline_s must be positive, not {new.deadline_s}")
        created = ts(now)
        extra = {**new.extra, WITHHOLD_NSFW_KEY: True} if new.withhold_nsfw else new.extra
        async with self._transaction() as db:
            usage = await self._usage(db, new.subject, defaults=defaults, now=now)
            quota.refuse_if_over(usage, cost=new.cost, now=now)
            # Spend caps (bot.money.caps): against every process's reservations, in this same transaction.
            if new.spend is not None:
                caps = await self._spend_caps(db, new.subject.scope, new.subject.user_id,
                                              install_daily_micro=new.spend.install_daily_micro, now=now)
                if (refused := first_exceeded(caps, new.spend.worst_micro, now=now)) is not None:
                    raise refused
            lease = new.lease
            cursor = await db.execute(
                "INSERT INTO jobs (scope, user_id, origin, operation, request, provider, state, cost,"
                " created_at, updated_at, deadline_at, attempts, parent_job_id, channel_id, seed, extra,"
                " lease_owner, lease_host, lease_pid, lease_expires_at, token)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (new.subject.scope, new.subject.user_id, Origin(new.origin).value, Operation(new.operation).value,
                 to_json(new.request), new.provider, JobState.PENDING.value, new.cost, created, created,
                 ts(now + timedelta(seconds=new.deadline_s)), new.parent_job_id,
                 text_or_none(new.channel_id), text_or_none(new.seed), encode_extra(extra),
                 lease.owner if lease else None, lease.host if lease else None, lease.pid if lease else None,
                 ts(now + timedelta(seconds=lease.seconds)) if lease else None, new_token()))
            job_id = cursor.lastrowid
            await cursor.close()
            assert job_id is not None
            if new.delivery_target is not None:
                await db.execute(
                    "INSERT INTO deliveries (job_id, target, state, attempts, next_attempt_at, created_at)"
                    " VALUES (?, ?, ?, 0, ?, ?)",
                    (job_id, new.delivery_target, DeliveryState.PENDING.value, created, created))
            if new.spend is not None:
                await db.execute(
                    "INSERT INTO job_spend (job_id, scope, user_id, operation, provider, created_at, images,"
                    " reserved_micro, member_micro) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (job_id, new.subject.scope, new.subject.user_id, new.operation, new.provider, created,
                     new.cost, new.spend.worst_micro, new.spend.worst_micro))
            job = await self._job(db, job_id)
        assert job is not None
        return job

    async def get_job(self, job_id: int) -> Job | None:
        async with self._lock:
            return await self._job(self._db, job_id)

    async def job_by_message(self, message_id: int | str) -> Job | None:
        async with self._lock:
            rows = await self._rows(
                self._db,
                "SELECT jobs.* FROM discord_posts JOIN jobs ON jobs.id = discord_posts.job_id"
                " WHERE discord_posts.message_id = ? LIMIT 1", (str(message_id),))
        return job_from_row(rows[0]) if rows else None

    async def list_jobs(self, subject: Subject | None = None, *, limit: int = 20,
                        states: Sequence[JobState] | None = None) -> list[Job]:
        states_json = _ALL_STATES_JSON if states is None else to_json([JobState(s).value for s in states])
        limit = max(0, limit)  # SQLite reads a negative LIMIT as "no limit"
        async with self._lock:
            if subject is None:
                rows = await self._rows(
                    self._db,
                    f"{_JOB_SELECT} WHERE state IN (SELECT value FROM json_each(?))"  # noqa: S608 - constant
                    " ORDER BY created_at DESC, id DESC LIMIT ?", (states_json, limit))
            else:
                rows = await self._rows(
                    self._db,
                    f"{_JOB_SELECT} WHERE scope = ? AND user_id = ?"  # noqa: S608 - constant text
                    " AND state IN (SELECT value FROM json_each(?))"
                    " ORDER BY created_at DESC, id DESC LIMIT ?",
                    (subject.scope, subject.user_id, states_json, limit))
        return [job_from_row(r) for r in rows]

    @staticmethod
    def _set_clause(fields: dict[str, Any], now: datetime) -> tuple[str, list[Any]]:
        return set_clause(fields, now, placeholder="?", now_value=ts(now))

    async def update_job(self, job_id: int, *, now: datetime, **fields: Any) -> Job:
        assignments, params = self._set_clause(fields, now)
        async with self._transaction() as db:
            changed = await self._changes(db, f"UPDATE jobs SET {assignments} WHERE id = ?",  # noqa: S608
                                          [*params, job_id])
            if not changed:
                raise KeyError(job_id)
            job = await self._job(db, job_id)
        assert job is not None
        return job

    async def transition(self, job_id: int, to: JobState, *, now: datetime, **fields: Any) -> Job | None:
        if "state" in fields:
            raise ValueError("transition takes the state it moves to as `to`, not as a field")
        assignments, params = self._set_clause({"state": to, **fields}, now)
        sources_json = to_json(sorted(s.value for s in states.sources(to)))
        async with self._transaction() as db:
            changed = await self._changes(
                db,
                f"UPDATE jobs SET {assignments}"  # noqa: S608 - column names from UPDATABLE only
                " WHERE id = ? AND state IN (SELECT value FROM json_each(?))",
                [*params, job_id, sources_json])
            job = await self._job(db, job_id)
        if job is None:
            raise KeyError(job_id)
        if changed:
            return job
        if states.lost_race(job.state, to):
            return None
        raise states.IllegalTransitionError(job_id, job.state, to)

    async def refund(self, job_id: int, *, now: datetime) -> bool:
        async with self._transaction() as db:
            changed = await self._changes(
                db, "UPDATE jobs SET refunded = 1, updated_at = ? WHERE id = ? AND refunded = 0",
                (ts(now), job_id))
            if not changed and not await self._rows(db, "SELECT 1 FROM jobs WHERE id = ?", (job_id,)):
                raise KeyError(job_id)
        return changed == 1

    async def settle_cost(self, job_id: int, *, images: int, now: datetime) -> bool:
        if images < 0:
            raise ValueError(f"images must be 0 or more, not {images}")
        if images == 0:
            return await self.refund(job_id, now=now)
        async with self._transaction() as db:
            # Only ever lowers the cost, so settling again (after a crash, or twice by two paths) changes nothing.
            changed = await self._changes(
                db, "UPDATE jobs SET cost = ?, updated_at = ? WHERE id = ? AND cost > ? AND refunded = 0",
                (images, ts(now), job_id, images))
            if not changed and not await self._rows(db, "SELECT 1 FROM jobs WHERE id = ?", (job_id,)):
                raise KeyError(job_id)
        return changed == 1

    # --- quotas ----------------------------------------------------------------------------------------

    async def _usage(self, db: aiosqlite.Connection, subject: Subject, *, defaults: QuotaLimits,
                     now: datetime) -> QuotaUsage:
        rows = await self._rows(
            db,
            "SELECT kind, daily, concurrent FROM quota_limits WHERE scope = ? AND ("
            " (kind = 'member' AND subject_id = ?)"
            " OR (kind = 'role' AND subject_id IN (SELECT value FROM json_each(?)))"
            " OR (kind = 'scope' AND subject_id = ''))",
            (subject.scope, subject.user_id, to_json([str(r) for r in subject.role_ids])))
        limits = QuotaLimits(daily=quota.resolve_limit(rows, "daily", defaults.daily),
                             concurrent=quota.resolve_limit(rows, "concurrent", defaults.concurrent))
        day_start, resets_at = day_bounds(now)
        # Bounded on both sides so that a `now` in the past (tests, clock steps) counts only that day.
        used = await self._rows(
            db,
            "SELECT COALESCE(SUM(cost), 0) FROM jobs WHERE scope = ? AND user_id = ?"
            " AND created_at >= ? AND created_at < ? AND refunded = 0",
            (subject.scope, subject.user_id, ts(day_start), ts(resets_at)))
        in_flight = await self._rows(
            db,
            "SELECT COUNT(*) FROM jobs WHERE state IN (SELECT value FROM json_each(?))"
            " AND scope = ? AND user_id = ?",
            (_IN_FLIGHT_JSON, subject.scope, subject.user_id))
        return QuotaUsage(subject=subject, limits=limits, used_today=int(used[0][0]),
                          in_flight=int(in_flight[0][0]), resets_at=resets_at)

    async def scope_usage(self, scope: str, *, now: datetime | None = None) -> list[tuple[str, int, int]]:
        """(user_id, images used today, jobs created today) for every user active today in a scope."""
        now = now or self.clock()
        day_start, resets_at = day_bounds(now)
        async with self._lock:
            rows = await self._rows(
                self._db,
                "SELECT user_id, COALESCE(SUM(CASE WHEN refunded = 0 THEN cost ELSE 0 END), 0), COUNT(*)"
                " FROM jobs WHERE scope = ? AND created_at >= ? AND created_at < ?"
                " GROUP BY user_id ORDER BY 2 DESC, 3 DESC",
                (scope, ts(day_start), ts(resets_at)))
        return [(str(r[0]), int(r[1]), int(r[2])) for r in rows]

    async def usage(self, subject: Subject, *, defaults: QuotaLimits, now: datetime) -> QuotaUsage:
        async with self._transaction(write=False) as db:  # one snapshot for all three figures
            return await self._usage(db, subject, defaults=defaults, now=now)

    async def set_limit(self, scope: str, kind: str, subject_id: str, *, daily: int | None,
                        concurrent: int | None) -> None:
        quota.check_limit_key(scope, kind, subject_id)
        quota.check_limit_values(daily=daily, concurrent=concurrent)
        if daily is None and concurrent is None:
            # A row that sets nothing would only hide that no override exists.
            await self.clear_limit(scope, kind, subject_id)
            return
        async with self._lock:
            await self._changes(
                self._db,
                "INSERT INTO quota_limits (scope, kind, subject_id, daily, concurrent) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (scope, kind, subject_id)"
                " DO UPDATE SET daily = excluded.daily, concurrent = excluded.concurrent",
                (scope, kind, subject_id, daily, concurrent))

    async def clear_limit(self, scope: str, kind: str, subject_id: str) -> None:
        quota.check_limit_key(scope, kind, subject_id)
        async with self._lock:
            await self._changes(self._db,
                                "DELETE FROM quota_limits WHERE scope = ? AND kind = ? AND subject_id = ?",
                                (scope, kind, subject_id))

    # --- leases ----------------------------------------------------------------------------------------

    async def claim(self, job_id: int, owner: str, *, host: str, pid: int, now: datetime,
                    lease_s: float) -> bool:
        async with self._lock:
            rows = await self._rows(
                self._db,
                "SELECT lease_owner, lease_host, lease_pid, lease_expires_at FROM jobs WHERE id = ?",
                (job_id,))
            if not rows or not leases.lease_takeable(rows[0], claimer=owner, host=host, now=now):
                return False
            # Whether the holder's process is alive is decided in Python, so the UPDATE is a compare-and-set
            # on the lease we looked at: if anyone claimed or renewed it since, we lose.
            changed = await self._changes(
                self._db,
                "UPDATE jobs SET lease_owner = ?, lease_host = ?, lease_pid = ?, lease_expires_at = ?"
                " WHERE id = ? AND lease_owner IS ? AND lease_expires_at IS ?",
                (owner, host, pid, ts(now + timedelta(seconds=lease_s)), job_id,
                 rows[0]["lease_owner"], rows[0]["lease_expires_at"]))
        return changed == 1

    async def claimable(self, origins: Sequence[Origin], *, now: datetime, host: str,
                        limit: int = 500) -> list[Job]:
        async with self._lock:
            rows = await self._rows(
                self._db,
                "SELECT * FROM jobs WHERE origin IN (SELECT value FROM json_each(?))"
                # unfinished, or finished with a delivery still owed (same condition as renew_leases)
                " AND (state IN (SELECT value FROM json_each(?))"
                "      OR id IN (SELECT job_id FROM deliveries WHERE state = 'pending'))"
                " AND (lease_owner IS NULL OR lease_expires_at < ? OR lease_host = ?)"
                " ORDER BY id",
                (to_json([Origin(o).value for o in origins]), _IN_FLIGHT_JSON, ts(now), host))
        # Live leases from this host come back from SQL too; only those whose process is gone are kept.
        takeable = (r for r in rows if leases.lease_takeable(r, claimer=None, host=host, now=now))
        return [job_from_row(r) for r, _ in zip(takeable, range(max(0, limit)), strict=False)]

    async def renew_leases(self, owner: str, *, now: datetime, lease_s: float) -> int:
        async with self._lock:
            return await self._changes(
                self._db,
                "UPDATE jobs SET lease_expires_at = ? WHERE lease_owner = ?"
                " AND (state IN (SELECT value FROM json_each(?))"
                "      OR id IN (SELECT job_id FROM deliveries WHERE state = 'pending'))",
                (ts(now + timedelta(seconds=lease_s)), owner, _IN_FLIGHT_JSON))

    async def release(self, job_id: int, owner: str) -> None:
        async with self._lock:
            await self._changes(
                self._db,
                "UPDATE jobs SET lease_owner = NULL, lease_host = NULL, lease_pid = NULL,"
                " lease_expires_at = NULL WHERE id = ? AND lease_owner = ?", (job_id, owner))

    # --- the delivery outbox ---------------------------------------------------------------------------

    async def enqueue_delivery(self, job_id: int, target: str, *, now: datetime) -> None:
        created = ts(now)
        async with self._lock:
            # ON CONFLICT rather than INSERT OR IGNORE: only "already queued" is ignored; an unknown job
            # still fails on the foreign key.
            await self._changes(
                self._db,
                "INSERT INTO deliveries (job_id, target, state, attempts, next_attempt_at, created_at)"
                " VALUES (?, ?, ?, 0, ?, ?) ON CONFLICT (job_id, target) DO NOTHING",
                (job_id, target, DeliveryState.PENDING.value, created, created))

    async def due_deliveries(self, *, now: datetime, targets: Sequence[str], limit: int = 100) -> list[Delivery]:
        async with self._lock:
            rows = await self._rows(
                self._db,
                # Only finished jobs have something to deliver; a delivery is owed from a job's creation on.
                "SELECT * FROM deliveries WHERE state = ? AND next_attempt_at <= ?"
                " AND target IN (SELECT value FROM json_each(?))"
                " AND job_id IN (SELECT id FROM jobs WHERE state NOT IN (SELECT value FROM json_each(?)))"
                " ORDER BY next_attempt_at, created_at, job_id LIMIT ?",
                (DeliveryState.PENDING.value, ts(now), to_json(list(targets)), _IN_FLIGHT_JSON, max(0, limit)))
        return [delivery_from_row(r) for r in rows]

    async def delivery_failed(self, job_id: int, target: str, *, error: str, next_attempt_at: datetime) -> int:
        async with self._lock:
            rows = await self._rows(
                self._db,
                "UPDATE deliveries SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?"
                " WHERE job_id = ? AND target = ? AND state = ? RETURNING attempts",
                (error[:MAX_DELIVERY_ERROR_CHARS], ts(next_attempt_at), job_id, target,
                 DeliveryState.PENDING.value))
        return int(rows[0][0]) if rows else 0

    async def give_up_delivery(self, job_id: int, target: str, *, error: str, now: datetime) -> bool:
        async with self._lock:
            changed = await self._changes(
                self._db,
                "UPDATE deliveries SET state = ?, last_error = ?, done_at = ? WHERE job_id = ? AND target = ?"
                " AND state = ?",
                (DeliveryState.UNDELIVERABLE.value, error[:MAX_DELIVERY_ERROR_CHARS], ts(now), job_id, target,
                 DeliveryState.PENDING.value))
        return changed == 1

    async def delivery_done(self, job_id: int, target: str, *, now: datetime) -> bool:
        done_at = ts(now)
        async with self._lock:
            # An upsert, so a delivery made straight away (never queued) is recorded too; the WHERE makes
            # a second "done" change nothing, which is how the caller learns someone else delivered it.
            changed = await self._changes(
                self._db,
                "INSERT INTO deliveries (job_id, target, state, attempts, next_attempt_at, created_at, done_at)"
                " VALUES (?, ?, ?, 0, ?, ?, ?)"
                " ON CONFLICT (job_id, target) DO UPDATE SET state = excluded.state, done_at = excluded.done_at"
                " WHERE deliveries.state = ?",
                (job_id, target, DeliveryState.DONE.value, done_at, done_at, done_at,
                 DeliveryState.PENDING.value))
        return changed == 1

    async def is_delivered(self, job_id: int, target: str) -> bool:
        async with self._lock:
            rows = await self._rows(self._db,
                                    "SELECT 1 FROM deliveries WHERE job_id = ? AND target = ? AND state = ?",
                                    (job_id, target, DeliveryState.DONE.value))
        return bool(rows)

    # --- housekeeping ----------------------------------------------------------------------------------

    async def prunable_outputs(self, *, finished_before: datetime) -> list[tuple[int, StoredOutput]]:
        async with self._lock:
            rows = await self._rows(
                self._db,
                "SELECT id, outputs FROM jobs WHERE state IN (SELECT value FROM json_each(?))"
                # updated_at stands in for a terminal job that somehow has no finished_at.
                " AND COALESCE(finished_at, updated_at) < ?"
                " AND EXISTS (SELECT 1 FROM json_each(jobs.outputs)"
                "             WHERE json_extract(value, '$.path') IS NOT NULL)"
                # A delivery still owed needs its images, however old the job.
                " AND id NOT IN (SELECT job_id FROM deliveries WHERE state = ?)"
                " ORDER BY id",
                (_TERMINAL_JSON, ts(finished_before), DeliveryState.PENDING.value))
        return [(row["id"], output) for row in rows for output in decode_outputs(row["outputs"])
                if output.path is not None]

    async def blobs_in_use(self, sha256s: Sequence[str], *, finished_before: datetime) -> set[str]:
        if not sha256s:
            return set()
        async with self._lock:
            rows = await self._rows(
                self._db,
                # The jobs pruning leaves alone: unfinished, finished inside retention, or owed a delivery.
                "WITH keep AS (SELECT request, outputs FROM jobs"
                "  WHERE state NOT IN (SELECT value FROM json_each(?)) OR COALESCE(finished_at, updated_at) >= ?"
                "     OR id IN (SELECT job_id FROM deliveries WHERE state = ?)),"
                " wanted AS (SELECT value AS sha FROM json_each(?))"
                # Inputs are referenced anywhere in the request (every image reference has a sha256 key) ...
                " SELECT t.value FROM keep, json_tree(keep.request) AS t"
                "  WHERE t.key = 'sha256' AND t.value IN (SELECT sha FROM wanted)"
                # ... outputs by their entries, while the job still keeps its local copy.
                " UNION SELECT json_extract(o.value, '$.sha256') FROM keep, json_each(keep.outputs) AS o"
                "  WHERE json_extract(o.value, '$.path') IS NOT NULL"
                "    AND json_extract(o.value, '$.sha256') IN (SELECT sha FROM wanted)",
                (_TERMINAL_JSON, ts(finished_before), DeliveryState.PENDING.value, to_json(sorted(set(sha256s)))))
        return {str(row[0]) for row in rows}

    async def mark_outputs_pruned(self, job_id: int) -> None:
        async with self._transaction() as db:
            rows = await self._rows(db, "SELECT outputs FROM jobs WHERE id = ?", (job_id,))
            if not rows:
                raise KeyError(job_id)
            # The rows stay (history, hashes, provider URLs); only the local copies are gone.
            pruned = [dataclasses.replace(o, path=None) for o in decode_outputs(rows[0]["outputs"])]
            await self._changes(db, "UPDATE jobs SET outputs = ? WHERE id = ?", (encode_outputs(pruned), job_id))

    # --- guild settings (schema 2) ---------------------------------------------------------------------

    async def guild_settings(self, guild_id: int | str) -> dict[str, Any]:
        """Every setting a guild's administrators chose, by key (absent keys: the bot's defaults)."""
        async with self._lock:
            rows = await self._rows(self._db, "SELECT key, value_json FROM guild_settings WHERE guild_id = ?",
                                    (str(guild_id),))
        return {row["key"]: json.loads(row["value_json"]) for row in rows}

    async def set_guild_setting(self, guild_id: int | str, key: str, value: Any, *,
                                now: datetime | None = None) -> None:
        now = now or self.clock()
        if not key:
            raise ValueError("setting key must not be empty")
        async with self._lock:
            await self._changes(
                self._db,
                "INSERT INTO guild_settings (guild_id, key, value_json, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (guild_id, key)"
                " DO UPDATE SET value_json = excluded.value_json, updated_at = excluded.updated_at",
                (str(guild_id), key, to_json(value), ts(now)))

    async def sync_commands_once(self, scope: str, digest: str, publish: Callable[[], Awaitable[None]]) -> bool:
        """Run `publish()` unless the commands of `scope` were last published as `digest`; then record it. (One
        process uses a SQLite store: nothing to wait for; the write lock is not held while Discord answers.)"""
        async with self._lock:
            rows = await self._rows(self._db, "SELECT digest FROM command_syncs WHERE scope = ?", (scope,))
        if rows and rows[0]["digest"] == digest:
            return False
        await publish()
        async with self._lock:
            await self._changes(
                self._db, "INSERT INTO command_syncs (scope, digest, synced_at) VALUES (?, ?, ?) ON CONFLICT (scope)"
                " DO UPDATE SET digest = excluded.digest, synced_at = excluded.synced_at",
                (scope, digest, ts(self.clock())))
        return True

    async def clear_guild_setting(self, guild_id: int | str, key: str) -> bool:
        async with self._lock:
            return await self._changes(self._db, "DELETE FROM guild_settings WHERE guild_id = ? AND key = ?",
                                       (str(guild_id), key)) == 1

    # --- Discord posts (schema 4) -----------------------------------------------------------------------

    async def job_by_token(self, token: str) -> Job | None:
        async with self._lock:
            rows = await self._rows(self._db, "SELECT * FROM jobs WHERE token = ?", (token,))
        return job_from_row(rows[0]) if rows else None

    async def open_post(self, job_id: int, kind: PostKind, *, channel_id: int | str | None) -> tuple[DiscordPost, bool]:
        """The job's post of this kind that is still unsettled (a previous attempt may have reached Discord), or a
        new one. The bool is True when it is new: nothing can have been posted for it yet."""
        kind = PostKind(kind)
        async with self._transaction() as db:
            rows = await self._rows(
                db, "SELECT * FROM discord_posts WHERE job_id = ? AND kind = ? AND message_id IS NULL"
                    " AND note IS NULL ORDER BY id DESC LIMIT 1", (job_id, kind.value))
            if rows:
                return post_from_row(rows[0]), False
            token = await self._rows(db, "SELECT token FROM jobs WHERE id = ?", (job_id,))
            if not token:
                raise KeyError(job_id)
            cursor = await db.execute(
                "INSERT INTO discord_posts (job_id, kind, nonce, channel_id, created_at) VALUES (?, ?, ?, ?, ?)",
                (job_id, kind.value, new_nonce(kind, token[0]["token"]), text_or_none(channel_id),
                 ts(self.clock())))
            post_id = cursor.lastrowid
            await cursor.close()
            rows = await self._rows(db, "SELECT * FROM discord_posts WHERE id = ?", (post_id,))
        return post_from_row(rows[0]), True

    async def record_post(self, post_id: int, *, message_id: int | str | None, channel_id: int | str | None = None,
                          note: str | None = None, in_guild: bool = True) -> DiscordPost:
        """What Discord answered for a post: its message (and channel), or a note saying why there is none.
        A result message in a guild channel also becomes the job's public message (jobs.message_id)."""
        now = ts(self.clock())
        async with self._transaction() as db:
            changed = await self._changes(
                db, "UPDATE discord_posts SET message_id = ?, channel_id = COALESCE(?, channel_id), note = ?,"
                    " posted_at = ? WHERE id = ?",
                (text_or_none(message_id), text_or_none(channel_id), note, now, post_id))
            if not changed:
                raise KeyError(post_id)
            rows = await self._rows(db, "SELECT * FROM discord_posts WHERE id = ?", (post_id,))
            post = post_from_row(rows[0])
            if post.kind is PostKind.RESULT and message_id is not None and in_guild:
                await self._changes(db, "UPDATE jobs SET message_id = ?, updated_at = ? WHERE id = ?",
                                    (str(message_id), now, post.job_id))
        return post

    async def posts_of(self, job_id: int) -> list[DiscordPost]:
        """Every post of the job, oldest first."""
        async with self._lock:
            rows = await self._rows(self._db, "SELECT * FROM discord_posts WHERE job_id = ? ORDER BY id", (job_id,))
        return [post_from_row(r) for r in rows]

    async def post_by_message(self, message_id: int | str) -> DiscordPost | None:
        async with self._lock:
            rows = await self._rows(self._db, "SELECT * FROM discord_posts WHERE message_id = ?", (str(message_id),))
        return post_from_row(rows[0]) if rows else None

    # --- retired models (schema 5) -----------------------------------------------------------------------

    async def mark_retired(self, provider: str, model: str, *, reason: str, now: datetime,
                           until: datetime) -> bool:
        """Mark a model gone until `until`. True when no live mark existed, i.e. this caller found it first
        (and should tell the operator)."""
        async with self._transaction() as db:
            live = await self._rows(db, "SELECT 1 FROM retired_models WHERE provider = ? AND model = ?"
                                        " AND expires_at > ?", (provider, model, ts(now)))
            await self._changes(
                db,
                "INSERT INTO retired_models (provider, model, reason, marked_at, expires_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (provider, model) DO UPDATE SET reason = excluded.reason,"
                " marked_at = excluded.marked_at, expires_at = excluded.expires_at",
                (provider, model, reason[:500], ts(now), ts(until)))
        return not live

    async def retired_until(self, provider: str, model: str, *, now: datetime) -> datetime | None:
        """When a live retirement mark of this model expires, or None when there is none."""
        async with self._lock:
            rows = await self._rows(self._db, "SELECT expires_at FROM retired_models WHERE provider = ?"
                                              " AND model = ? AND expires_at > ?", (provider, model, ts(now)))
        return dt(rows[0]["expires_at"]) if rows else None

    # --- money: spend caps and usage in dollars; amounts in integer micro-dollars ----------------

    async def _spend_caps(self, db: aiosqlite.Connection, scope: str, user_id: str, *,
                          install_daily_micro: int | None, now: datetime) -> list[CapState]:
        """Every cap that applies to a job of `user_id` in `scope`, with what is spent in its period so far."""
        day_start, day_end = _utc_day(now)
        caps: list[CapState] = []

        async def spent(sql: str, params: Sequence[Any]) -> int:
            rows = await self._rows(db, sql, params)
            return int(rows[0][0])

        if install_daily_micro is not None:
            caps.append(CapState("install_daily", install_daily_micro, await spent(
                "SELECT COALESCE(SUM(reserved_micro), 0) FROM job_spend WHERE created_at >= ? AND created_at < ?",
                (ts(day_start), ts(day_end))), day_end))
        if scope.startswith("guild:"):
            rows = await self._rows(db, "SELECT value_json FROM guild_settings WHERE guild_id = ? AND key = ?",
                                    (scope.removeprefix("guild:"), BUDGET_KEY))
            budget = GuildBudget.from_setting(json.loads(rows[0][0])) if rows else GuildBudget()
            month_start, month_end = month_bounds(now)
            in_scope = ("SELECT COALESCE(SUM(reserved_micro), 0) FROM job_spend WHERE scope = ?"
                        " AND created_at >= ? AND created_at < ?")
            if budget.daily is not None:
                caps.append(CapState("guild_daily", budget.daily,
                                     await spent(in_scope, (scope, ts(day_start), ts(day_end))), day_end))
            if budget.monthly is not None:
                caps.append(CapState("guild_monthly", budget.monthly,
                                     await spent(in_scope, (scope, ts(month_start), ts(month_end))), month_end))
            if budget.member_daily is not None:
                caps.append(CapState("member_daily", budget.member_daily, await spent(
                    "SELECT COALESCE(SUM(member_micro), 0) FROM job_spend WHERE scope = ? AND user_id = ?"
                    " AND created_at >= ? AND created_at < ?", (scope, user_id, ts(day_start), ts(day_end))),
                    day_end))
        return caps

    async def spend_caps(self, scope: str, user_id: str, *, install_daily_micro: int | None,
                         now: datetime) -> list[CapState]:
        async with self._transaction(write=False) as db:
            return await self._spend_caps(db, scope, user_id, install_daily_micro=install_daily_micro, now=now)

    async def job_spend(self, job_id: int) -> JobSpend | None:
        async with self._lock:
            rows = await self._rows(self._db, "SELECT * FROM job_spend WHERE job_id = ?", (job_id,))
        if not rows:
            return None
        r = rows[0]
        return JobSpend(job_id=int(r["job_id"]), scope=r["scope"], user_id=r["user_id"], operation=r["operation"],
                        provider=r["provider"], created_at=dt(r["created_at"]), images=int(r["images"]),
                        reserved_micro=int(r["reserved_micro"]), member_micro=int(r["member_micro"]),
                        settled_at=dt_or_none(r["settled_at"]))

    async def settle_spend(self, job_id: int, *, images: int, reserved_micro: int, member_micro: int,
                           provider: str, now: datetime) -> bool:
        if min(images, reserved_micro, member_micro) < 0:
            raise ValueError("a settlement is 0 or more")
        async with self._transaction() as db:
            # Only ever lowers the figures, so settling again (after a crash, by two paths, or when a delivery is
            # given up after the job was settled) never charges more.
            changed = await self._changes(
                db,
                "UPDATE job_spend SET images = MIN(images, ?), reserved_micro = MIN(reserved_micro, ?),"
                " member_micro = MIN(member_micro, ?), provider = ?, settled_at = COALESCE(settled_at, ?)"
                " WHERE job_id = ? AND (settled_at IS NULL OR images > ? OR reserved_micro > ? OR member_micro > ?)",
                (images, reserved_micro, member_micro, provider, ts(now), job_id, images, reserved_micro,
                 member_micro))
        return changed == 1

    async def claim_spend_notice(self, scope: str, cap: str, *, period_start: datetime, now: datetime) -> bool:
        async with self._transaction() as db:
            changed = await self._changes(
                db, "INSERT OR IGNORE INTO spend_notices (scope, cap, period_start, sent_at) VALUES (?, ?, ?, ?)",
                (scope, cap, ts(period_start), ts(now)))
        return changed == 1

    async def spend_report(self, scope: str | None, *, since: datetime, until: datetime) -> list[SpendRow]:
        async with self._lock:
            rows = await self._rows(
                self._db,
                "SELECT substr(created_at, 1, 10) AS day, scope, user_id, operation, provider, COUNT(*),"
                " COALESCE(SUM(images), 0), COALESCE(SUM(reserved_micro), 0) FROM job_spend"
                " WHERE (? IS NULL OR scope = ?) AND created_at >= ? AND created_at < ?"
                " GROUP BY day, scope, user_id, operation, provider ORDER BY day, scope, user_id, operation, provider",
                (scope, scope, ts(since), ts(until)))
        return [SpendRow(date=str(r[0]), guild_id=str(r[1]).removeprefix("guild:") if r[1] != "cli" else "",
                         user_id=str(r[2]), operation=str(r[3]), provider=str(r[4]), jobs=int(r[5]),
                         images=int(r[6]), micro=int(r[7])) for r in rows]
