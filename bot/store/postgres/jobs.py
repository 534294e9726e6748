"""Jobs, quotas, leases and provider slots on PostgreSQL.

Concurrency, under READ COMMITTED:
- A quota or cap check and the insert it guards run in one transaction that first takes transaction-level
  advisory locks in statements of their own (install, then guild, then member: one order, so no deadlock). The
  lock must come before the counting statement: a statement's snapshot is taken when it starts, so a lock taken
  inside the counting statement would count without the rows of whoever held it.
- Compare-and-set UPDATEs decide for themselves: a second writer waits for the first's row lock and re-checks its
  WHERE against the row as committed.
- Claiming scans with FOR UPDATE SKIP LOCKED, so processes scanning at once split the work instead of queueing.
- Lease times come from the database's clock (now()); the `now` callers pass is used for the job's own times.
- A job's worker writes fenced (bot.store.fencing): `AND lease_owner = me`, and LeaseLostError when the job turns
  out to be someone else's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from bot.money.caps import BUDGET_KEY, CapState, GuildBudget, first_exceeded, month_bounds
from bot.money.caps import day_bounds as utc_day
from bot.operations import Operation
from bot.store import quota, states
from bot.store.channels import SLOTS_CHANNEL
from bot.store.models import (
    WITHHOLD_NSFW_KEY,
    Job,
    JobState,
    NewJob,
    Origin,
    QuotaLimits,
    QuotaUsage,
    Subject,
)
from bot.store.postgres.base import AT_PROVIDER, IN_FLIGHT, JOB_SELECT, OWED, TAKEABLE, PgBase
from bot.store.postgres.connection import Connection
from bot.store.postgres.locks import MEMBER_CLASS, SCOPE_CLASS, SLOT_CLASS, key
from bot.store.postgres.presence import PROCESS_ALIVE
from bot.store.quota import day_bounds
from bot.store.rows import encode_extra, job_from_row, new_token, set_clause, text_or_none, to_json, ts

# How each updatable column's encoded value (bot.store.rows.UPDATABLE: text for times and JSON) is read here.
_CASTS = {"handle": "::jsonb", "outputs": "::jsonb", "extra": "::jsonb", "charged": "::int::boolean",
          "submitted_at": "::timestamptz", "finished_at": "::timestamptz"}


# The job, the delivery it is owed from its first moment, and its money, in one statement (one round trip).
_INSERT_JOB = (
    "WITH j AS (INSERT INTO jobs (token, scope, user_id, origin, operation, request, provider, state, cost,"
    "   created_at, updated_at, deadline_at, parent_job_id, channel_id, seed, extra,"
    "   lease_owner, lease_host, lease_pid, lease_expires_at)"
    " VALUES (%(token)s, %(scope)s, %(user)s, %(origin)s, %(operation)s, %(request)s::jsonb, %(provider)s,"
    "   'pending', %(cost)s, %(now)s, %(now)s, %(deadline)s, %(parent)s, %(channel)s, %(seed)s, %(extra)s::jsonb,"
    "   %(owner)s, %(host)s, %(pid)s, CASE WHEN %(lease)s::float8 IS NULL THEN NULL"
    "                                ELSE now() + %(lease)s::float8 * interval '1 second' END) RETURNING *),"
    " d AS (INSERT INTO deliveries (job_id, target, state, attempts, next_attempt_at, created_at)"
    "   SELECT id, %(target)s, 'pending', 0, %(now)s, %(now)s FROM j WHERE %(target)s::text IS NOT NULL),"
    " s AS (INSERT INTO job_spend (job_id, scope, user_id, operation, provider, created_at, images, reserved_micro,"
    "   member_micro) SELECT id, scope, user_id, operation, provider, created_at, cost, %(worst)s, %(worst)s"
    "   FROM j WHERE %(spend)s)"
    " SELECT j.*, false AS undeliverable FROM j")


class PgJobs(PgBase):
    # --- jobs ----------------------------------------------------------------------------------------------

    async def create_job(self, new: NewJob, *, defaults: QuotaLimits, now: datetime) -> Job:
        if new.cost < 0:
            raise ValueError(f"cost must be 0 or more, not {new.cost}")
        if not new.deadline_s > 0:
            raise ValueError(f"deadline_s must be positive, not {new.deadline_s}")
        ts(now)  # refuses a naive datetime, as every store does
        extra = {**new.extra, WITHHOLD_NSFW_KEY: True} if new.withhold_nsfw else new.extra
        subject = new.subject
        async with self._connection() as conn, conn.transaction():
            budget = await self._lock_for(conn, new)
            usage = await self._usage(conn, subject, defaults=defaults, now=now)
            quota.refuse_if_over(usage, cost=new.cost, now=now)
            if new.spend is not None:
                caps = await self._spend_caps(conn, subject.scope, subject.user_id, budget=budget,
                                              install_daily_micro=new.spend.install_daily_micro, now=now)
                if (refused := first_exceeded(caps, new.spend.worst_micro, now=now)) is not None:
                    raise refused
            row = await (await conn.execute(_INSERT_JOB, self._insert_params(new, extra, now))).fetchone()
        assert row is not None
        return job_from_row(row)

    @staticmethod
    def _insert_params(new: NewJob, extra: dict[str, Any], now: datetime) -> dict[str, Any]:
        lease, spend = new.lease, new.spend
        return {"token": new_token(), "scope": new.subject.scope, "user": new.subject.user_id,
                "origin": Origin(new.origin).value, "operation": Operation(new.operation).value,
                "request": to_json(new.request), "provider": new.provider, "cost": new.cost, "now": now,
                "deadline": now + timedelta(seconds=new.deadline_s), "parent": new.parent_job_id,
                "channel": text_or_none(new.channel_id), "seed": text_or_none(new.seed), "extra": encode_extra(extra),
                "owner": lease.owner if lease else None, "host": lease.host if lease else None,
                "pid": lease.pid if lease else None, "lease": lease.seconds if lease else None,
                "target": new.delivery_target, "spend": spend is not None,
                "worst": spend.worst_micro if spend else 0}

    async def _lock_for(self, conn: Connection, new: NewJob) -> GuildBudget:
        """Take the locks that serialise the checks `new` must pass, each in a statement of its own (see the
        module's docstring), always in one order: the install, the guild, the member. Returns the guild's budget."""
        subject = new.subject
        budget = await self._budget(conn, subject.scope) if new.spend is not None else GuildBudget()
        if new.spend is not None and new.spend.install_daily_micro is not None:
            await conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (SCOPE_CLASS,))
        if new.spend is not None and (budget.daily is not None or budget.monthly is not None):
            await conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (SCOPE_CLASS, key(subject.scope)))
        await conn.execute("SELECT pg_advisory_xact_lock(%s, %s)",
                           (MEMBER_CLASS, key(f"{subject.scope}/{subject.user_id}")))
        return budget

    async def get_job(self, job_id: int) -> Job | None:
        async with self._connection() as conn:
            return await self._job(conn, job_id)

    async def job_by_message(self, message_id: int | str) -> Job | None:
        row = await self._one("SELECT jobs.* FROM discord_posts JOIN jobs ON jobs.id = discord_posts.job_id"
                              " WHERE discord_posts.message_id = %s LIMIT 1", (str(message_id),))
        return job_from_row(row) if row else None

    async def job_by_token(self, token: str) -> Job | None:
        row = await self._one("SELECT * FROM jobs WHERE token = %s", (token,))
        return job_from_row(row) if row else None

    async def list_jobs(self, subject: Subject | None = None, *, limit: int = 20,
                        states: Sequence[JobState] | None = None) -> list[Job]:
        wanted = [s.value for s in JobState] if states is None else [JobState(s).value for s in states]
        if subject is None:
            rows = await self._all(f"{JOB_SELECT} WHERE state = ANY(%s) ORDER BY created_at DESC, id DESC"
                                   " LIMIT %s", (wanted, max(0, limit)))
        else:
            rows = await self._all(f"{JOB_SELECT} WHERE scope = %s AND user_id = %s AND state = ANY(%s)"
                                   " ORDER BY created_at DESC, id DESC LIMIT %s",
                                   (subject.scope, subject.user_id, wanted, max(0, limit)))
        return [job_from_row(r) for r in rows]

    @staticmethod
    def _set_clause(fields: dict[str, Any], now: datetime) -> tuple[str, list[Any]]:
        assignments, params = set_clause(fields, now, placeholder="%s", now_value=now,
                                         cast=lambda name: _CASTS.get(name, ""))
        if "state" in fields and JobState(fields["state"]) is not JobState.PENDING:
            assignments += ", waiting_since = NULL"  # out of the line for a slot
        return assignments, params

    async def update_job(self, job_id: int, *, now: datetime, **fields: Any) -> Job:
        assignments, params = self._set_clause(fields, now)
        owner = await self.fenced()
        async with self._connection() as conn, conn.transaction():
            changed = (await conn.execute(
                f"UPDATE jobs SET {assignments} WHERE id = %s AND (%s::text IS NULL OR lease_owner = %s)",  # noqa: S608 - constant SQL fragments
                [*params, job_id, owner, owner])).rowcount
            job = await self._job(conn, job_id)
        if job is None:
            raise KeyError(job_id)
        if not changed:
            assert owner is not None
            raise self.lost(job_id, owner)
        return job

    async def transition(self, job_id: int, to: JobState, *, now: datetime, **fields: Any) -> Job | None:
        if "state" in fields:
            raise ValueError("transition takes the state it moves to as `to`, not as a field")
        to = JobState(to)
        assignments, params = self._set_clause({"state": to, **fields}, now)
        sources = sorted(s.value for s in states.sources(to))
        owner = await self.fenced()
        async with self._connection() as conn, conn.transaction():
            changed = (await conn.execute(
                f"UPDATE jobs SET {assignments} WHERE id = %s AND state = ANY(%s)"  # noqa: S608 - constant SQL fragments
                " AND (%s::text IS NULL OR lease_owner = %s)", [*params, job_id, sources, owner, owner])).rowcount
            job = await self._job(conn, job_id)
            if changed and job is not None and to.value not in AT_PROVIDER:
                # A slot may have come free: wake the processes whose jobs wait for one (a rare event: once per job).
                await conn.execute("SELECT pg_notify(%s, %s)", (SLOTS_CHANNEL, job.provider))
        if job is None:
            raise KeyError(job_id)
        if changed:
            return job
        if owner is not None and job.lease_owner != owner and job.state.value in sources:
            raise self.lost(job_id, owner)
        if states.lost_race(job.state, to):
            return None
        raise states.IllegalTransitionError(job_id, job.state, to)

    async def refund(self, job_id: int, *, now: datetime) -> bool:
        owner = await self.fenced()
        async with self._connection() as conn, conn.transaction():
            changed = (await conn.execute(
                "UPDATE jobs SET refunded = true, updated_at = %s WHERE id = %s AND NOT refunded"
                " AND (%s::text IS NULL OR lease_owner = %s)", (now, job_id, owner, owner))).rowcount
            if not changed:
                await self._explain_unchanged(conn, job_id, owner, done="refunded")
        return changed == 1

    async def settle_cost(self, job_id: int, *, images: int, now: datetime) -> bool:
        if images < 0:
            raise ValueError(f"images must be 0 or more, not {images}")
        if images == 0:
            return await self.refund(job_id, now=now)
        owner = await self.fenced()
        async with self._connection() as conn, conn.transaction():
            changed = (await conn.execute(
                "UPDATE jobs SET cost = %s, updated_at = %s WHERE id = %s AND cost > %s AND NOT refunded"
                " AND (%s::text IS NULL OR lease_owner = %s)",
                (images, now, job_id, images, owner, owner))).rowcount
            if not changed:
                await self._explain_unchanged(conn, job_id, owner, done="")
        return changed == 1

    async def _explain_unchanged(self, conn: Connection, job_id: int, owner: str | None, *, done: str) -> None:
        """A guarded UPDATE changed nothing: an unknown job (KeyError), a job another process holds now
        (LeaseLostError), or simply nothing left to change (return)."""
        row = await (await conn.execute("SELECT lease_owner FROM jobs WHERE id = %s", (job_id,))).fetchone()
        if row is None:
            raise KeyError(job_id)
        if owner is not None and row["lease_owner"] != owner:
            raise self.lost(job_id, owner)

    # --- quotas --------------------------------------------------------------------------------------------

    async def _usage(self, conn: Connection, subject: Subject, *, defaults: QuotaLimits,
                     now: datetime) -> QuotaUsage:
        day_start, resets_at = day_bounds(now)
        # The overrides and both figures in one statement (one round trip, one snapshot).
        figures = await (await conn.execute(
            "SELECT COALESCE((SELECT jsonb_agg(jsonb_build_object('kind', kind, 'daily', daily,"
            "   'concurrent', concurrent)) FROM quota_limits WHERE scope = %(scope)s AND ("
            "   (kind = 'member' AND subject_id = %(user)s) OR (kind = 'role' AND subject_id = ANY(%(roles)s))"
            "   OR (kind = 'scope' AND subject_id = ''))), '[]'::jsonb) AS limits,"
            " COALESCE(SUM(cost) FILTER (WHERE created_at >= %(start)s AND created_at < %(end)s AND NOT refunded),"
            "   0) AS used, COUNT(*) FILTER (WHERE state = ANY(%(in_flight)s)) AS in_flight"
            # Only today's rows and the unfinished ones count: a member's older history is never read.
            " FROM jobs WHERE scope = %(scope)s AND user_id = %(user)s"
            " AND ((created_at >= %(start)s AND created_at < %(end)s) OR state = ANY(%(in_flight)s))",
            {"scope": subject.scope, "user": subject.user_id, "roles": [str(r) for r in subject.role_ids],
             "start": day_start, "end": resets_at, "in_flight": IN_FLIGHT})).fetchone()
        assert figures is not None
        rows = figures["limits"]
        limits = QuotaLimits(daily=quota.resolve_limit(rows, "daily", defaults.daily),
                             concurrent=quota.resolve_limit(rows, "concurrent", defaults.concurrent))
        return QuotaUsage(subject=subject, limits=limits, used_today=int(figures["used"]),
                          in_flight=int(figures["in_flight"]), resets_at=resets_at)

    async def usage(self, subject: Subject, *, defaults: QuotaLimits, now: datetime) -> QuotaUsage:
        async with self._connection() as conn:
            return await self._usage(conn, subject, defaults=defaults, now=now)

    async def scope_usage(self, scope: str, *, now: datetime | None = None) -> list[tuple[str, int, int]]:
        day_start, resets_at = day_bounds(now or self.clock())
        rows = await self._all(
            "SELECT user_id, COALESCE(SUM(CASE WHEN NOT refunded THEN cost ELSE 0 END), 0) AS used, COUNT(*) AS n"
            " FROM jobs WHERE scope = %s AND created_at >= %s AND created_at < %s"
            " GROUP BY user_id ORDER BY 2 DESC, 3 DESC", (scope, day_start, resets_at))
        return [(str(r["user_id"]), int(r["used"]), int(r["n"])) for r in rows]

    async def set_limit(self, scope: str, kind: str, subject_id: str, *, daily: int | None,
                        concurrent: int | None) -> None:
        quota.check_limit_key(scope, kind, subject_id)
        quota.check_limit_values(daily=daily, concurrent=concurrent)
        if daily is None and concurrent is None:
            await self.clear_limit(scope, kind, subject_id)
            return
        await self._count(
            "INSERT INTO quota_limits (scope, kind, subject_id, daily, concurrent) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (scope, kind, subject_id)"
            " DO UPDATE SET daily = excluded.daily, concurrent = excluded.concurrent",
            (scope, kind, subject_id, daily, concurrent))

    async def clear_limit(self, scope: str, kind: str, subject_id: str) -> None:
        quota.check_limit_key(scope, kind, subject_id)
        await self._count("DELETE FROM quota_limits WHERE scope = %s AND kind = %s AND subject_id = %s",
                          (scope, kind, subject_id))

    # --- spend caps (the reading; bot.store.postgres.records settles) -----------------------------------------

    @staticmethod
    async def _budget(conn: Connection, scope: str) -> GuildBudget:
        if not scope.startswith("guild:"):
            return GuildBudget()
        row = await (await conn.execute("SELECT value_json FROM guild_settings WHERE guild_id = %s AND key = %s",
                                        (scope.removeprefix("guild:"), BUDGET_KEY))).fetchone()
        return GuildBudget.from_setting(row["value_json"]) if row else GuildBudget()

    async def _spend_caps(self, conn: Connection, scope: str, user_id: str, *, budget: GuildBudget | None = None,
                          install_daily_micro: int | None, now: datetime) -> list[CapState]:
        day_start, day_end = utc_day(now)
        caps: list[CapState] = []

        async def spent(sql: str, params: Sequence[Any]) -> int:
            row = await (await conn.execute(sql, params)).fetchone()
            assert row is not None
            return int(row["spent"])

        if install_daily_micro is not None:
            caps.append(CapState("install_daily", install_daily_micro, await spent(
                "SELECT COALESCE(SUM(reserved_micro), 0) AS spent FROM job_spend"
                " WHERE created_at >= %s AND created_at < %s", (day_start, day_end)), day_end))
        if scope.startswith("guild:"):
            budget = budget if budget is not None else await self._budget(conn, scope)
            month_start, month_end = month_bounds(now)
            in_scope = ("SELECT COALESCE(SUM(reserved_micro), 0) AS spent FROM job_spend WHERE scope = %s"
                        " AND created_at >= %s AND created_at < %s")
            if budget.daily is not None:
                caps.append(CapState("guild_daily", budget.daily,
                                     await spent(in_scope, (scope, day_start, day_end)), day_end))
            if budget.monthly is not None:
                caps.append(CapState("guild_monthly", budget.monthly,
                                     await spent(in_scope, (scope, month_start, month_end)), month_end))
            if budget.member_daily is not None:
                caps.append(CapState("member_daily", budget.member_daily, await spent(
                    "SELECT COALESCE(SUM(member_micro), 0) AS spent FROM job_spend WHERE scope = %s"
                    " AND user_id = %s AND created_at >= %s AND created_at < %s",
                    (scope, user_id, day_start, day_end)), day_end))
        return caps

    async def spend_caps(self, scope: str, user_id: str, *, install_daily_micro: int | None,
                         now: datetime) -> list[CapState]:
        async with self._connection() as conn, conn.transaction():
            return await self._spend_caps(conn, scope, user_id, install_daily_micro=install_daily_micro, now=now)

    # --- leases ----------------------------------------------------------------------------------------------

    async def claim(self, job_id: int, owner: str, *, host: str, pid: int, now: datetime,
                    lease_s: float) -> bool:
        return await self._count(
            "UPDATE jobs SET lease_owner = %(me)s, lease_host = %(host)s, lease_pid = %(pid)s,"  # noqa: S608 - constant SQL fragments
            " lease_expires_at = now() + %(lease)s * interval '1 second'"
            f" WHERE id = %(id)s AND {TAKEABLE}",
            {"me": owner, "host": host, "pid": pid, "lease": lease_s, "id": job_id}) == 1

    async def claimable(self, origins: Sequence[Origin], *, now: datetime, host: str,
                        limit: int = 500) -> list[Job]:
        rows = await self._all(
            f"SELECT * FROM jobs WHERE origin = ANY(%(origins)s) AND {OWED} AND {TAKEABLE}"  # noqa: S608 - constant SQL fragments
            " ORDER BY id LIMIT %(limit)s",
            {"origins": [Origin(o).value for o in origins], "in_flight": IN_FLIGHT, "me": None,
             "limit": max(0, limit)})
        return [job_from_row(r) for r in rows]

    async def claim_batch(self, origins: Sequence[Origin], owner: str, *, host: str, pid: int, lease_s: float,
                          limit: int) -> list[int]:
        """Take the leases of up to `limit` owed jobs nobody alive holds, in one statement. Processes scanning at
        once skip each other's rows (SKIP LOCKED) instead of waiting for them, so they split the work."""
        rows = await self._all(
            "UPDATE jobs SET lease_owner = %(me)s, lease_host = %(host)s, lease_pid = %(pid)s,"  # noqa: S608 - constant SQL fragments
            " lease_expires_at = now() + %(lease)s * interval '1 second'"
            " WHERE id IN (SELECT id FROM jobs WHERE origin = ANY(%(origins)s)"
            f"   AND {OWED} AND jobs.lease_owner IS DISTINCT FROM %(me)s AND {TAKEABLE}"
            "   ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED) RETURNING id",
            {"me": owner, "host": host, "pid": pid, "lease": lease_s, "in_flight": IN_FLIGHT,
             "origins": [Origin(o).value for o in origins], "limit": max(0, limit)})
        return sorted(int(r["id"]) for r in rows)

    async def renew_leases(self, owner: str, *, now: datetime, lease_s: float) -> int:
        started = time.monotonic()
        renewed = await self._count(
            "UPDATE jobs SET lease_expires_at = now() + %(lease)s * interval '1 second'"  # noqa: S608 - constant SQL fragments
            f" WHERE lease_owner = %(me)s AND {OWED}", {"lease": lease_s, "me": owner, "in_flight": IN_FLIGHT})
        # Counted from before the statement: the leases are at least this fresh.
        self._renewed[owner] = (started, lease_s)
        return renewed

    async def release(self, job_id: int, owner: str) -> None:
        await self._count("UPDATE jobs SET lease_owner = NULL, lease_host = NULL, lease_pid = NULL,"
                          " lease_expires_at = NULL WHERE id = %s AND lease_owner = %s", (job_id, owner))

    async def live_processes(self) -> int:
        """Processes holding their liveness lock on this database now (at least 1: this one)."""
        row = await self._one(f"SELECT COUNT(*) AS n FROM processes p WHERE {PROCESS_ALIVE}")  # noqa: S608 - constant SQL fragments
        return max(1, int(row["n"]) if row else 1)

    # --- provider slots: *_MAX_PARALLEL across every process ---------------------------------------------------

    async def take_slot(self, job_id: int, provider: str, *, capacity: int, attempts: int,
                        now: datetime) -> Job | int | None:
        """Move a pending job to SUBMITTING at `provider` if one of its `capacity` slots is free and the job is
        next in line; else put it in line (kept across restarts) and return its 1-based place. None: the job is
        no longer pending (cancelled, say). A slot is held by being at the provider (submitting, queued, running,
        fetching) and given back by leaving those states, so a job resumed after a restart keeps its slot.

        The line is round-robin across members: each member's first waiting job, then each one's second, and so
        on; among the same turn, the member served longest ago goes first (as a rotation does: whoever just took a
        slot goes to the back). Jobs whose lease lapsed (their process is gone) are not in it."""
        owner = await self.fenced()
        async with self._connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (SLOT_CLASS, key(provider)))
            row = await (await conn.execute(
                "UPDATE jobs SET waiting_since = COALESCE(waiting_since, clock_timestamp()), provider = %s"
                " WHERE id = %s AND state = 'pending' AND (%s::text IS NULL OR lease_owner = %s)"
                " RETURNING id", (provider, job_id, owner, owner))).fetchone()
            if row is None:
                current = await self._job(conn, job_id)
                if current is None:
                    raise KeyError(job_id)
                if owner is not None and current.lease_owner != owner and current.state is JobState.PENDING:
                    raise self.lost(job_id, owner)
                return None
            figures = await (await conn.execute(
                "WITH line AS (SELECT id, scope, user_id, waiting_since, row_number() OVER"
                "   (PARTITION BY scope, user_id ORDER BY waiting_since, id) AS turn FROM jobs"
                "   WHERE provider = %(p)s AND state = 'pending' AND waiting_since IS NOT NULL"
                "     AND (jobs.lease_expires_at > now() OR jobs.id = %(id)s)),"
                " served AS (SELECT m.scope, m.user_id, (SELECT MAX(j.slot_at) FROM jobs j WHERE j.scope = m.scope"
                "   AND j.user_id = m.user_id AND j.provider = %(p)s) AS last"
                "   FROM (SELECT DISTINCT scope, user_id FROM line) m),"
                " ranked AS (SELECT line.id, row_number() OVER (ORDER BY line.turn,"
                "   COALESCE(served.last, '-infinity'::timestamptz), line.waiting_since, line.id) AS place"
                "   FROM line JOIN served USING (scope, user_id))"
                " SELECT (SELECT place FROM ranked WHERE id = %(id)s) AS place,"
                "  (SELECT COUNT(*) FROM jobs WHERE provider = %(p)s AND state = ANY(%(busy)s)) AS busy",
                {"p": provider, "id": job_id, "busy": AT_PROVIDER})).fetchone()
            assert figures is not None
            place, busy = int(figures["place"]), int(figures["busy"])
            if place > capacity - busy:
                return place
            await conn.execute(
                "UPDATE jobs SET state = 'submitting', attempts = %s, waiting_since = NULL, updated_at = %s,"
                " slot_at = clock_timestamp() WHERE id = %s", (attempts, now, job_id))
            return await self._job(conn, job_id)

    async def leave_line(self, job_id: int) -> None:
        """The job stopped waiting for a slot (cancelled, or its process stops): out of the line."""
        await self._count("UPDATE jobs SET waiting_since = NULL WHERE id = %s AND state = 'pending'", (job_id,))


__all__ = ["PgJobs"]
