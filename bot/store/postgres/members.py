"""What members keep for themselves, on PostgreSQL: preferences, a saved photo, and forgetting a member. The
semantics are the JobStore protocol's (bot.store.base), as on SQLite (bot.store.sqlite_members)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.store.models import FORGOTTEN_USER, Forgotten, Job, MemberPrefs, PhotoRef
from bot.store.postgres.base import IN_FLIGHT, JOB_SELECT, PgBase
from bot.store.postgres.connection import Connection
from bot.store.rows import job_from_row, to_json

# Every image a row references: inputs anywhere in a job's request or extra (each reference has a sha256 key),
# outputs, saved photos. %(user)s is the user whose rows count (NULL: everyone's).
_REFERENCED = (
    "SELECT s #>> '{}' AS sha FROM jobs, jsonb_path_query(jobs.request, 'strict $.**.sha256') AS s"
    " WHERE %(user)s::text IS NULL OR jobs.user_id = %(user)s"
    " UNION SELECT s #>> '{}' FROM jobs, jsonb_path_query(jobs.extra, 'strict $.**.sha256') AS s"
    " WHERE %(user)s::text IS NULL OR jobs.user_id = %(user)s"
    " UNION SELECT o ->> 'sha256' FROM jobs, jsonb_array_elements(jobs.outputs) AS o"
    " WHERE %(user)s::text IS NULL OR jobs.user_id = %(user)s"
    " UNION SELECT photo ->> 'sha256' FROM member_prefs"
    " WHERE photo IS NOT NULL AND (%(user)s::text IS NULL OR user_id = %(user)s)")


def _photo(data: Any) -> PhotoRef | None:
    if not isinstance(data, dict):
        return None
    return PhotoRef(sha256=data["sha256"], mime=data["mime"], width=int(data["width"]), height=int(data["height"]),
                    filename=data.get("filename") or "photo")


class PgMembers(PgBase):
    async def member_prefs(self, user_id: str) -> MemberPrefs:
        row = await self._one("SELECT * FROM member_prefs WHERE user_id = %s", (user_id,))
        if row is None:
            return MemberPrefs(user_id=user_id)
        return MemberPrefs(user_id=user_id, size=row["size"], count=row["count"],
                           private_delivery=bool(row["private_delivery"]), photo=_photo(row["photo"]))

    async def save_member_prefs(self, prefs: MemberPrefs, *, now: datetime) -> None:
        photo = None if prefs.photo is None else to_json(
            {"sha256": prefs.photo.sha256, "mime": prefs.photo.mime, "width": prefs.photo.width,
             "height": prefs.photo.height, "filename": prefs.photo.filename})
        await self._count(
            "INSERT INTO member_prefs (user_id, size, count, private_delivery, photo, updated_at)"
            " VALUES (%s, %s, %s, %s, %s::jsonb, %s) ON CONFLICT (user_id) DO UPDATE SET size = excluded.size,"
            " count = excluded.count, private_delivery = excluded.private_delivery, photo = excluded.photo,"
            " updated_at = excluded.updated_at",
            (prefs.user_id, prefs.size, prefs.count, prefs.private_delivery, photo, now))

    async def images_referenced(self, sha256s: Sequence[str]) -> set[str]:
        if not sha256s:
            return set()
        rows = await self._all(f"SELECT sha FROM ({_REFERENCED}) r WHERE sha = ANY(%(wanted)s)",  # noqa: S608
                               {"user": None, "wanted": sorted(set(sha256s))})
        return {str(r["sha"]) for r in rows}

    async def child_jobs(self, parent_job_id: int) -> list[Job]:
        rows = await self._all(f"{JOB_SELECT} WHERE parent_job_id = %s ORDER BY id", (parent_job_id,))
        return [job_from_row(row) for row in rows]

    async def forget_member(self, user_id: str, *, now: datetime) -> Forgotten | None:
        # PostgreSQL keeps old row versions until VACUUM reclaims them: forgetting is complete for every reader at
        # once, and on disk after the next vacuum of these tables (autovacuum, or the operator's).
        async with self._connection() as conn, conn.transaction():
            busy = await (await conn.execute(
                "SELECT COUNT(*) AS n FROM jobs WHERE user_id = %s AND (state = ANY(%s)"
                " OR id IN (SELECT job_id FROM deliveries WHERE state = 'pending'))",
                (user_id, IN_FLIGHT))).fetchone()
            if busy is not None and busy["n"]:
                return None
            theirs = await self._shas(conn, user_id)
            posts = (await conn.execute(
                "DELETE FROM discord_posts WHERE job_id IN (SELECT id FROM jobs WHERE user_id = %s)",
                (user_id,))).rowcount
            prefs = (await conn.execute("DELETE FROM member_prefs WHERE user_id = %s", (user_id,))).rowcount
            await conn.execute("DELETE FROM quota_limits WHERE kind = 'member' AND subject_id = %s", (user_id,))
            await conn.execute("UPDATE job_spend SET user_id = %s WHERE user_id = %s", (FORGOTTEN_USER, user_id))
            jobs = (await conn.execute(
                "UPDATE jobs SET user_id = %s, request = jsonb_build_object('operation', operation),"
                " outputs = '[]', seed = NULL, error_message = NULL, channel_id = NULL, message_id = NULL,"
                " handle = NULL, lease_owner = NULL, lease_host = NULL, lease_pid = NULL, lease_expires_at = NULL,"
                " extra = '{}', updated_at = %s WHERE user_id = %s", (FORGOTTEN_USER, now, user_id))).rowcount
            still = await self._shas(conn, None)
        return Forgotten(jobs=jobs, posts=posts, prefs=bool(prefs), blobs=tuple(sorted(theirs - still)))

    @staticmethod
    async def _shas(conn: Connection, user_id: str | None) -> set[str]:
        rows = await (await conn.execute(_REFERENCED, {"user": user_id})).fetchall()
        return {str(r["sha"]) for r in rows if r["sha"] is not None}
