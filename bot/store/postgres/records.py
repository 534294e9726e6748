"""Deliveries, Discord posts, guild settings, retired models, money and housekeeping on PostgreSQL.

Writes a job's worker makes here are fenced too: the transaction first reads the job's lease FOR SHARE (so no
takeover can commit while it runs) and raises LeaseLostError when another process holds the job.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.store.channels import WEBHOOKS_CHANNEL
from bot.store.models import Delivery, DeliveryState, DiscordPost, JobSpend, PostKind, SpendRow, StoredOutput
from bot.store.postgres.base import IN_FLIGHT, TERMINAL, PgBase
from bot.store.postgres.connection import Connection
from bot.store.rows import (
    decode_outputs,
    delivery_from_row,
    encode_outputs,
    new_nonce,
    post_from_row,
    text_or_none,
    to_json,
)

MAX_DELIVERY_ERROR_CHARS = 2000


class PgRecords(PgBase):
    async def _hold(self, conn: Connection, job_id: int, owner: str | None) -> None:
        """Inside a transaction: raise LeaseLostError if this task writes fenced (as `owner`, from fenced(), asked
        before the transaction began: a renewal needs a connection of its own) and the job is someone else's."""
        if owner is None:
            return
        row = await (await conn.execute("SELECT lease_owner FROM jobs WHERE id = %s FOR SHARE",
                                        (job_id,))).fetchone()
        if row is not None and row["lease_owner"] != owner:
            raise self.lost(job_id, owner)

    # --- the delivery outbox ---------------------------------------------------------------------------------

    async def enqueue_delivery(self, job_id: int, target: str, *, now: datetime) -> None:
        await self._count(
            "INSERT INTO deliveries (job_id, target, state, attempts, next_attempt_at, created_at)"
            " VALUES (%s, %s, 'pending', 0, %s, %s) ON CONFLICT (job_id, target) DO NOTHING",
            (job_id, target, now, now))

    async def due_deliveries(self, *, now: datetime, targets: Sequence[str], limit: int = 100) -> list[Delivery]:
        rows = await self._all(
            "SELECT * FROM deliveries WHERE state = 'pending' AND next_attempt_at <= %s AND target = ANY(%s)"
            " AND job_id IN (SELECT id FROM jobs WHERE NOT state = ANY(%s))"
            " ORDER BY next_attempt_at, created_at, job_id LIMIT %s",
            (now, list(targets), IN_FLIGHT, max(0, limit)))
        return [delivery_from_row(r) for r in rows]

    async def delivery_failed(self, job_id: int, target: str, *, error: str, next_attempt_at: datetime) -> int:
        owner = await self.fenced()
        async with self._connection() as conn, conn.transaction():
            await self._hold(conn, job_id, owner)
            row = await (await conn.execute(
                "UPDATE deliveries SET attempts = attempts + 1, last_error = %s, next_attempt_at = %s"
                " WHERE job_id = %s AND target = %s AND state = 'pending' RETURNING attempts",
                (error[:MAX_DELIVERY_ERROR_CHARS], next_attempt_at, job_id, target))).fetchone()
        return int(row["attempts"]) if row else 0

    async def give_up_delivery(self, job_id: int, target: str, *, error: str, now: datetime) -> bool:
        owner = await self.fenced()
        async with self._connection() as conn, conn.transaction():
            await self._hold(conn, job_id, owner)
            changed = (await conn.execute(
                "UPDATE deliveries SET state = %s, last_error = %s, done_at = %s"
                " WHERE job_id = %s AND target = %s AND state = 'pending'",
                (DeliveryState.UNDELIVERABLE.value, error[:MAX_DELIVERY_ERROR_CHARS], now, job_id,
                 target))).rowcount
        return changed == 1

    async def delivery_done(self, job_id: int, target: str, *, now: datetime) -> bool:
        owner = await self.fenced()
        async with self._connection() as conn, conn.transaction():
            await self._hold(conn, job_id, owner)
            changed = (await conn.execute(
                "INSERT INTO deliveries (job_id, target, state, attempts, next_attempt_at, created_at, done_at)"
                " VALUES (%s, %s, 'done', 0, %s, %s, %s)"
                " ON CONFLICT (job_id, target) DO UPDATE SET state = excluded.state, done_at = excluded.done_at"
                " WHERE deliveries.state = 'pending'", (job_id, target, now, now, now))).rowcount
        return changed == 1

    async def is_delivered(self, job_id: int, target: str) -> bool:
        return await self._one("SELECT 1 AS yes FROM deliveries WHERE job_id = %s AND target = %s"
                               " AND state = 'done'", (job_id, target)) is not None

    # --- housekeeping ----------------------------------------------------------------------------------------

    async def prunable_outputs(self, *, finished_before: datetime) -> list[tuple[int, StoredOutput]]:
        rows = await self._all(
            "SELECT id, outputs FROM jobs WHERE state = ANY(%s) AND COALESCE(finished_at, updated_at) < %s"
            " AND EXISTS (SELECT 1 FROM jsonb_array_elements(jobs.outputs) o WHERE o ->> 'path' IS NOT NULL)"
            " AND id NOT IN (SELECT job_id FROM deliveries WHERE state = 'pending') ORDER BY id",
            (TERMINAL, finished_before))
        return [(int(row["id"]), output) for row in rows for output in decode_outputs(row["outputs"])
                if output.path is not None]

    async def blobs_in_use(self, sha256s: Sequence[str], *, finished_before: datetime) -> set[str]:
        if not sha256s:
            return set()
        rows = await self._all(
            "WITH keep AS (SELECT request, outputs FROM jobs"
            "  WHERE NOT state = ANY(%(terminal)s) OR COALESCE(finished_at, updated_at) >= %(cutoff)s"
            "     OR id IN (SELECT job_id FROM deliveries WHERE state = 'pending'))"
            # Inputs are referenced anywhere in the request (every image reference has a sha256 key) ...
            " SELECT sha #>> '{}' AS sha FROM keep, jsonb_path_query(keep.request, 'strict $.**.sha256') AS sha"
            "  WHERE sha #>> '{}' = ANY(%(wanted)s)"
            # ... outputs by their entries, while the job still keeps its copy.
            " UNION SELECT o ->> 'sha256' FROM keep, jsonb_array_elements(keep.outputs) AS o"
            "  WHERE o ->> 'path' IS NOT NULL AND o ->> 'sha256' = ANY(%(wanted)s)",
            {"terminal": TERMINAL, "cutoff": finished_before, "wanted": sorted(set(sha256s))})
        return {str(row["sha"]) for row in rows}

    async def mark_outputs_pruned(self, job_id: int) -> None:
        async with self._connection() as conn, conn.transaction():
            row = await (await conn.execute("SELECT outputs FROM jobs WHERE id = %s FOR UPDATE",
                                            (job_id,))).fetchone()
            if row is None:
                raise KeyError(job_id)
            pruned = [dataclasses.replace(o, path=None) for o in decode_outputs(row["outputs"])]
            await conn.execute("UPDATE jobs SET outputs = %s::jsonb WHERE id = %s", (encode_outputs(pruned), job_id))

    # --- guild settings --------------------------------------------------------------------------------------

    async def guild_settings(self, guild_id: int | str) -> dict[str, Any]:
        rows = await self._all("SELECT key, value_json FROM guild_settings WHERE guild_id = %s", (str(guild_id),))
        return {row["key"]: row["value_json"] for row in rows}

    async def set_guild_setting(self, guild_id: int | str, key: str, value: Any, *,
                                now: datetime | None = None) -> None:
        if not key:
            raise ValueError("setting key must not be empty")
        await self._count(
            "INSERT INTO guild_settings (guild_id, key, value_json, updated_at) VALUES (%s, %s, %s::jsonb, %s)"
            " ON CONFLICT (guild_id, key) DO UPDATE SET value_json = excluded.value_json,"
            " updated_at = excluded.updated_at", (str(guild_id), key, to_json(value), now or self.clock()))

    async def clear_guild_setting(self, guild_id: int | str, key: str) -> bool:
        return await self._count("DELETE FROM guild_settings WHERE guild_id = %s AND key = %s",
                                 (str(guild_id), key)) == 1

    # --- Discord posts ---------------------------------------------------------------------------------------

    async def open_post(self, job_id: int, kind: PostKind, *,
                        channel_id: int | str | None) -> tuple[DiscordPost, bool]:
        kind = PostKind(kind)
        owner = await self.fenced()
        async with self._connection() as conn, conn.transaction():
            await self._hold(conn, job_id, owner)
            token = await (await conn.execute("SELECT token FROM jobs WHERE id = %s FOR UPDATE",
                                              (job_id,))).fetchone()
            if token is None:
                raise KeyError(job_id)
            # FOR UPDATE on the job above: two attempts at one post cannot both open a new one.
            row = await (await conn.execute(
                "SELECT * FROM discord_posts WHERE job_id = %s AND kind = %s AND message_id IS NULL"
                " AND note IS NULL ORDER BY id DESC LIMIT 1", (job_id, kind.value))).fetchone()
            if row is not None:
                return post_from_row(row), False
            row = await (await conn.execute(
                "INSERT INTO discord_posts (job_id, kind, nonce, channel_id, created_at)"
                " VALUES (%s, %s, %s, %s, %s) RETURNING *",
                (job_id, kind.value, new_nonce(kind, token["token"]), text_or_none(channel_id),
                 self.clock()))).fetchone()
            assert row is not None
        return post_from_row(row), True

    async def record_post(self, post_id: int, *, message_id: int | str | None, channel_id: int | str | None = None,
                          note: str | None = None, in_guild: bool = True) -> DiscordPost:
        now = self.clock()
        owner = await self.fenced()
        async with self._connection() as conn, conn.transaction():
            found = await (await conn.execute("SELECT job_id FROM discord_posts WHERE id = %s",
                                              (post_id,))).fetchone()
            if found is None:
                raise KeyError(post_id)
            await self._hold(conn, int(found["job_id"]), owner)
            row = await (await conn.execute(
                "UPDATE discord_posts SET message_id = %s, channel_id = COALESCE(%s, channel_id), note = %s,"
                " posted_at = %s WHERE id = %s RETURNING *",
                (text_or_none(message_id), text_or_none(channel_id), note, now, post_id))).fetchone()
            assert row is not None
            post = post_from_row(row)
            if post.kind is PostKind.RESULT and message_id is not None and in_guild:
                await conn.execute("UPDATE jobs SET message_id = %s, updated_at = %s WHERE id = %s",
                                   (str(message_id), now, post.job_id))
        return post

    async def posts_of(self, job_id: int) -> list[DiscordPost]:
        return [post_from_row(r) for r in
                await self._all("SELECT * FROM discord_posts WHERE job_id = %s ORDER BY id", (job_id,))]

    async def post_by_message(self, message_id: int | str) -> DiscordPost | None:
        row = await self._one("SELECT * FROM discord_posts WHERE message_id = %s", (str(message_id),))
        return post_from_row(row) if row else None

    # --- retired models --------------------------------------------------------------------------------------

    async def mark_retired(self, provider: str, model: str, *, reason: str, now: datetime,
                           until: datetime) -> bool:
        async with self._connection() as conn, conn.transaction():
            live = await (await conn.execute(
                "SELECT 1 AS yes FROM retired_models WHERE provider = %s AND model = %s AND expires_at > %s"
                " FOR UPDATE", (provider, model, now))).fetchone()
            await conn.execute(
                "INSERT INTO retired_models (provider, model, reason, marked_at, expires_at)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (provider, model) DO UPDATE SET"
                " reason = excluded.reason, marked_at = excluded.marked_at, expires_at = excluded.expires_at",
                (provider, model, reason[:500], now, until))
        return live is None

    async def retired_until(self, provider: str, model: str, *, now: datetime) -> datetime | None:
        row = await self._one("SELECT expires_at FROM retired_models WHERE provider = %s AND model = %s"
                              " AND expires_at > %s", (provider, model, now))
        return row["expires_at"] if row else None

    # --- money -------------------------------------------------------------------------------------------

    async def job_spend(self, job_id: int) -> JobSpend | None:
        r = await self._one("SELECT * FROM job_spend WHERE job_id = %s", (job_id,))
        if r is None:
            return None
        return JobSpend(job_id=int(r["job_id"]), scope=r["scope"], user_id=r["user_id"], operation=r["operation"],
                        provider=r["provider"], created_at=r["created_at"], images=int(r["images"]),
                        reserved_micro=int(r["reserved_micro"]), member_micro=int(r["member_micro"]),
                        settled_at=r["settled_at"])

    async def settle_spend(self, job_id: int, *, images: int, reserved_micro: int, member_micro: int,
                           provider: str, now: datetime) -> bool:
        if min(images, reserved_micro, member_micro) < 0:
            raise ValueError("a settlement is 0 or more")
        owner = await self.fenced()
        async with self._connection() as conn, conn.transaction():
            await self._hold(conn, job_id, owner)
            changed = (await conn.execute(
                "UPDATE job_spend SET images = LEAST(images, %(i)s), reserved_micro = LEAST(reserved_micro, %(r)s),"
                " member_micro = LEAST(member_micro, %(m)s), provider = %(p)s,"
                " settled_at = COALESCE(settled_at, %(now)s) WHERE job_id = %(id)s"
                " AND (settled_at IS NULL OR images > %(i)s OR reserved_micro > %(r)s OR member_micro > %(m)s)",
                {"i": images, "r": reserved_micro, "m": member_micro, "p": provider, "now": now,
                 "id": job_id})).rowcount
        return changed == 1

    async def claim_spend_notice(self, scope: str, cap: str, *, period_start: datetime, now: datetime) -> bool:
        return await self._count(
            "INSERT INTO spend_notices (scope, cap, period_start, sent_at) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING", (scope, cap, period_start, now)) == 1

    async def spend_report(self, scope: str | None, *, since: datetime, until: datetime) -> list[SpendRow]:
        rows = await self._all(
            "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, scope, user_id, operation,"
            " provider, COUNT(*) AS jobs, COALESCE(SUM(images), 0) AS images,"
            " COALESCE(SUM(reserved_micro), 0) AS micro FROM job_spend"
            " WHERE (%(scope)s::text IS NULL OR scope = %(scope)s) AND created_at >= %(since)s"
            " AND created_at < %(until)s GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5",
            {"scope": scope, "since": since, "until": until})
        return [SpendRow(date=str(r["day"]), guild_id=str(r["scope"]).removeprefix("guild:")
                         if r["scope"] != "cli" else "", user_id=str(r["user_id"]), operation=str(r["operation"]),
                         provider=str(r["provider"]), jobs=int(r["jobs"]), images=int(r["images"]),
                         micro=int(r["micro"])) for r in rows]

    # --- the webhook inbox -----------------------------------------------------------------------------------

    async def record_webhook(self, provider: str, remote_id: str, *, verified: bool,
                             outcome: dict[str, Any] | None = None) -> None:
        """A verified call for this provider job reached this process: keep it for whichever process follows the
        job, and wake that one (NOTIFY is delivered at commit; the periodic scan covers a lost one)."""
        async with self._connection() as conn, conn.transaction():
            # Only about a job at that provider now (or one being sent there, whose id is not stored yet), so
            # that made-up ids, which anyone can send to an unsigned endpoint, cost one indexed look-up.
            kept = await (await conn.execute(
                "INSERT INTO webhook_inbox (provider, remote_id, verified, outcome)"
                " SELECT %(p)s, %(r)s, %(v)s, %(o)s::jsonb WHERE EXISTS"
                " (SELECT 1 FROM jobs WHERE provider = %(p)s AND state = 'submitting')"
                " OR EXISTS (SELECT 1 FROM jobs WHERE handle ->> 'remote_id' = %(r)s AND provider = %(p)s"
                "            AND state = ANY(%(in_flight)s)) RETURNING id",
                {"p": provider, "r": remote_id, "v": verified, "in_flight": IN_FLIGHT,
                 "o": None if outcome is None else to_json(outcome)})).fetchone()
            if kept is not None:
                # The outcome itself stays in the row (a NOTIFY payload is small): the follower reads it by id.
                said = "outcome" if outcome is not None else "verified" if verified else "unsigned"
                await conn.execute("SELECT pg_notify(%s, %s)",
                                   (WEBHOOKS_CHANNEL, f"{provider} {remote_id} {said} {kept['id']}"))

    async def webhook_outcome(self, call_id: int) -> dict[str, Any] | None:
        row = await self._one("SELECT outcome FROM webhook_inbox WHERE id = %s", (call_id,))
        return row["outcome"] if row else None

    async def webhooks_after(self, after_id: int, *,
                             limit: int = 1000) -> list[tuple[int, str, str, bool, dict[str, Any] | None]]:
        """Calls recorded after `after_id`, oldest first: (id, provider, remote_id, verified, outcome)."""
        rows = await self._all("SELECT id, provider, remote_id, verified, outcome FROM webhook_inbox WHERE id > %s"
                               " ORDER BY id LIMIT %s", (after_id, limit))
        return [(int(r["id"]), str(r["provider"]), str(r["remote_id"]), bool(r["verified"]), r["outcome"])
                for r in rows]

    async def newest_webhook_id(self, *, received_before: datetime) -> int:
        row = await self._one("SELECT COALESCE(MAX(id), 0) AS id FROM webhook_inbox WHERE received_at < %s",
                              (received_before,))
        return int(row["id"]) if row else 0

    async def prune_webhooks(self, *, received_before: datetime) -> int:
        return await self._count("DELETE FROM webhook_inbox WHERE received_at < %s", (received_before,))
