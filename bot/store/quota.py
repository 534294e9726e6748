"""Quota arithmetic and the words a member reads when a quota refuses a job: the same in every store.

A daily image allowance per UTC day and a cap on jobs in flight, resolved per column as: the member's override,
else the largest allowance of their roles, else the scope's (a guild's) default, else the settings' default.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from bot.errors import QuotaError
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


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _until(delta: timedelta) -> str:
    minutes = max(1, math.ceil(delta.total_seconds() / 60))
    hours, minutes = divmod(minutes, 60)
    if hours and minutes:
        return f"in {hours} h {minutes} min"
    return f"in {hours} h" if hours else f"in {minutes} min"


def daily_message(*, used: int, limit: int, cost: int, now: datetime, resets_at: datetime) -> str:
    resets = f"the quota resets at 00:00 UTC ({_until(resets_at - now)})"
    if limit == 0:
        return "Your daily image quota here is 0, so you cannot start jobs."
    if cost > limit:
        return f"This job needs {_plural(cost, 'image')}, more than your daily quota of {limit}."
    if used >= limit:
        return f"You have used {used} of your {_plural(limit, 'image')} today; {resets}."
    return (f"This job needs {_plural(cost, 'image')}, but you have only {limit - used} of your "
            f"{_plural(limit, 'image')} left today; {resets}.")


def concurrent_message(*, in_flight: int, limit: int, scope: str) -> str:
    if limit == 0:
        return "You cannot run jobs here: your limit of jobs running at once is 0."
    cancel = "/cancel one" if scope.startswith("guild:") else "cancel one"
    return (f"You already have {_plural(in_flight, 'job')} running; the limit is {limit}. "
            f"Wait for one to finish or {cancel}.")
