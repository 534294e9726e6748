"""Quota arithmetic and the words a member reads when a quota refuses a job: the same in every store.

A daily image allowance per UTC day and a cap on jobs in flight, resolved per column as: the member's override,
else the largest allowance of their roles, else the scope's (a guild's) default, else the settings' default.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from bot.errors import QuotaError, Term
from bot.i18n import N_
from bot.store.models import QuotaUsage
from bot.store.rows import Row

LIMIT_KINDS = frozenset({"member", "role", "scope"})


def day_bounds(now: datetime) -> tuple[datetime, datetime]:
    """The UTC day containing `now`: its start and the next midnight (when the daily quota resets)."""
    start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def refuse_if_over(usage: QuotaUsage, *, cost: int, now: datetime) -> None:
    """Raise QuotaError, in the member's words, when a job costing `cost` images would pass their daily allowance or
    their cap on jobs at once. Every store calls this inside the transaction that then records the job."""
    if usage.used_today + cost > usage.limits.daily:
        raise QuotaError(
            daily_message(used=usage.used_today, limit=usage.limits.daily, cost=cost, now=now,
                          resets_at=usage.resets_at),
            kind="daily", limit=usage.limits.daily, used=usage.used_today, resets_at=usage.resets_at)
    if usage.in_flight >= usage.limits.concurrent:
        raise QuotaError(
            concurrent_message(in_flight=usage.in_flight, limit=usage.limits.concurrent, scope=usage.subject.scope),
            kind="concurrent", limit=usage.limits.concurrent, used=usage.in_flight)


def check_limit_key(scope: str, kind: str, subject_id: str) -> None:
    """Refuse (ValueError) an override key no store may write."""
    if kind not in LIMIT_KINDS:
        raise ValueError(f"limit kind must be one of {sorted(LIMIT_KINDS)}, not {kind!r}")
    if (kind == "scope") != (subject_id == ""):
        raise ValueError('subject_id must be "" for kind "scope" and an id for "member" and "role"')
    if not scope:
        raise ValueError("scope must not be empty")


def check_limit_values(*, daily: int | None, concurrent: int | None) -> None:
    for name, value in (("daily", daily), ("concurrent", concurrent)):
        if value is not None and value < 0:
            raise ValueError(f"{name} limit must be 0 or more, not {value}")


def resolve_limit(rows: Iterable[Row], column: str, default: int) -> int:
    """member override, else the largest role allowance, else the scope default, else the settings default.

    Resolved per column: a row whose column is NULL says nothing about that column.
    """
    member: int | None = None
    scope: int | None = None
    roles: list[int] = []
    for row in rows:
        value = row[column]
        if value is None:
            continue
        if row["kind"] == "member":
            member = value
        elif row["kind"] == "role":
            roles.append(value)
        elif row["kind"] == "scope":
            scope = value
    if member is not None:
        return member
    if roles:
        return max(roles)
    if scope is not None:
        return scope
    return default


# The words are Terms: English as str (the CLI's, the logs'), and a Discord member reads them in their language.
def _images(count: int) -> Term:
    return Term(N_("{n} image") if count == 1 else N_("{n} images"), n=count)


def _jobs(count: int) -> Term:
    return Term(N_("{n} job") if count == 1 else N_("{n} jobs"), n=count)


def _until(delta: timedelta) -> Term:
    minutes = max(1, math.ceil(delta.total_seconds() / 60))
    hours, minutes = divmod(minutes, 60)
    if hours and minutes:
        return Term(N_("in {hours} h {minutes} min"), hours=hours, minutes=minutes)
    return Term(N_("in {hours} h"), hours=hours) if hours else Term(N_("in {minutes} min"), minutes=minutes)


def daily_message(*, used: int, limit: int, cost: int, now: datetime, resets_at: datetime) -> Term:
    resets = Term(N_("the quota resets at 00:00 UTC ({until})"), until=_until(resets_at - now))
    if limit == 0:
        return Term(N_("Your daily image quota here is 0, so you cannot start jobs."))
    if cost > limit:
        return Term(N_("This job needs {cost}, more than your daily quota of {limit}."), cost=_images(cost),
                    limit=limit)
    if used >= limit:
        return Term(N_("You have used {used} of your {limit} today; {resets}."), used=used, limit=_images(limit),
                    resets=resets)
    return Term(N_("This job needs {cost}, but you have only {left} of your {limit} left today; {resets}."),
                cost=_images(cost), left=limit - used, limit=_images(limit), resets=resets)


def concurrent_message(*, in_flight: int, limit: int, scope: str) -> Term:
    if limit == 0:
        return Term(N_("You cannot run jobs here: your limit of jobs running at once is 0."))
    cancel = Term(N_("/cancel one")) if scope.startswith("guild:") else Term(N_("cancel one"))
    return Term(N_("You already have {jobs} running; the limit is {limit}. Wait for one to finish or {cancel}."),
                jobs=_jobs(in_flight), limit=limit, cancel=cancel)
