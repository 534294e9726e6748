"""What members keep for themselves, on SQLite: preferences, a saved photo, and forgetting a member. SQL only; the
semantics are the JobStore protocol's (bot.store.base), which a PostgreSQL store mirrors."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import aiosqlite

from bot.store import busy
from bot.store.models import FORGOTTEN_USER, TERMINAL_STATES, DeliveryState, Forgotten, Job, MemberPrefs, PhotoRef
from bot.store.rows import JOB_SELECT, job_from_row, to_json, ts

_TERMINAL_JSON = json.dumps(sorted(s.value for s in TERMINAL_STATES))

# Every image a row references: inputs anywhere in a job's request or extra (each reference has a sha256 key),
# outputs, saved photos. `?` is the user whose rows count (NULL: everyone's).
_REFERENCED = (
    "SELECT t.value AS sha FROM jobs, json_tree(jobs.request) AS t"
    " WHERE t.key = 'sha256' AND (?1 IS NULL OR jobs.user_id = ?1)"
    " UNION SELECT t.value FROM jobs, json_tree(jobs.extra) AS t"
    " WHERE t.key = 'sha256' AND (?1 IS NULL OR jobs.user_id = ?1)"
    " UNION SELECT json_extract(o.value, '$.sha256') FROM jobs, json_each(jobs.outputs) AS o"
    " WHERE ?1 IS NULL OR jobs.user_id = ?1"
    " UNION SELECT json_extract(photo, '$.sha256') FROM member_prefs"
    " WHERE photo IS NOT NULL AND (?1 IS NULL OR user_id = ?1)"
)


def _photo_to_json(photo: PhotoRef | None) -> str | None:
    if photo is None:
        return None
    return to_json({"sha256": photo.sha256, "mime": photo.mime, "width": photo.width, "height": photo.height,
                    "filename": photo.filename})


def _photo_from_json(text: str | None) -> PhotoRef | None:
    if not text:
        return None
    data = json.loads(text)
    return PhotoRef(sha256=data["sha256"], mime=data["mime"], width=int(data["width"]), height=int(data["height"]),
                    filename=data.get("filename") or "photo")


@busy.patient_methods
class SqliteMembers:
    """Mixed into SqliteJobStore, whose connection, lock and transactions it uses."""

    busy_timeout_s: float

    if TYPE_CHECKING:
        _lock: Any
        _db: aiosqlite.Connection

        def _transaction(self, *, write: bool = True) -> AbstractAsyncContextManager[aiosqlite.Connection]: ...

        @staticmethod
        async def _rows(db: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]: ...

        @staticmethod
        async def _changes(db: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> int: ...

    async def member_prefs(self, user_id: str) -> MemberPrefs:
        async with self._lock:
            rows = await self._rows(self._db, "SELECT * FROM member_prefs WHERE user_id = ?", (user_id,))
        if not rows:
            return MemberPrefs(user_id=user_id)
        row = rows[0]
        return MemberPrefs(user_id=user_id, size=row["size"], count=row["count"],
                           private_delivery=bool(row["private_delivery"]), photo=_photo_from_json(row["photo"]))

    async def save_member_prefs(self, prefs: MemberPrefs, *, now: datetime) -> None:
        async with self._transaction() as db:
            await self._changes(
                db, "INSERT INTO member_prefs (user_id, size, count, private_delivery, photo, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET size = excluded.size,"
                    " count = excluded.count, private_delivery = excluded.private_delivery,"
                    " photo = excluded.photo, updated_at = excluded.updated_at",
                (prefs.user_id, prefs.size, prefs.count, int(prefs.private_delivery), _photo_to_json(prefs.photo),
                 ts(now)))

    async def images_referenced(self, sha256s: Sequence[str]) -> set[str]:
        if not sha256s:
            return set()
        async with self._lock:
            rows = await self._rows(self._db, _REFERENCED, (None,))  # a scan, as forgetting does: rare enough
        return set(sha256s) & {str(r[0]) for r in rows if r[0] is not None}

    async def child_jobs(self, parent_job_id: int) -> list[Job]:
        async with self._lock:
            rows = await self._rows(self._db, f"{JOB_SELECT} WHERE parent_job_id = ? ORDER BY id", (parent_job_id,))
        return [job_from_row(row) for row in rows]

    async def forget_member(self, user_id: str, *, now: datetime) -> Forgotten | None:
        # Deleted or rewritten content must not linger in the file's free space, nor in the write-ahead log's
        # older copies of the pages: zero what is freed, and fold the log back into the file afterwards.
        async with self._lock:
            await self._db.execute("PRAGMA secure_delete = ON")
        try:
            done = await self._forget(user_id, now=now)
        finally:
            async with self._lock:
                await self._db.execute("PRAGMA secure_delete = OFF")
        if done is not None:
            async with self._lock:
                await self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return done

    async def _forget(self, user_id: str, *, now: datetime) -> Forgotten | None:
        async with self._transaction() as db:
            busy_jobs = await self._rows(
                db, "SELECT COUNT(*) FROM jobs WHERE user_id = ? AND (state NOT IN (SELECT value FROM json_each(?))"
                    " OR id IN (SELECT job_id FROM deliveries WHERE state = ?))",
                (user_id, _TERMINAL_JSON, DeliveryState.PENDING.value))
            if busy_jobs[0][0]:
                return None
            theirs = {str(r[0]) for r in await self._rows(db, _REFERENCED, (user_id,)) if r[0] is not None}
            posts = await self._changes(
                db, "DELETE FROM discord_posts WHERE job_id IN (SELECT id FROM jobs WHERE user_id = ?)", (user_id,))
            prefs = await self._changes(db, "DELETE FROM member_prefs WHERE user_id = ?", (user_id,))
            await self._changes(db, "DELETE FROM quota_limits WHERE kind = 'member' AND subject_id = ?", (user_id,))
            await self._changes(db, "UPDATE job_spend SET user_id = ? WHERE user_id = ?", (FORGOTTEN_USER, user_id))
            jobs = await self._changes(
                db, "UPDATE jobs SET user_id = ?, request = json_object('operation', operation), outputs = '[]',"
                    " seed = NULL, error_message = NULL, channel_id = NULL, message_id = NULL, handle = NULL,"
                    " lease_owner = NULL, lease_host = NULL, lease_pid = NULL, lease_expires_at = NULL,"
                    " extra = '{}', updated_at = ? WHERE user_id = ?",
                (FORGOTTEN_USER, ts(now), user_id))
            still = {str(r[0]) for r in await self._rows(db, _REFERENCED, (None,)) if r[0] is not None}
        return Forgotten(jobs=jobs, posts=posts, prefs=bool(prefs), blobs=tuple(sorted(theirs - still)))
