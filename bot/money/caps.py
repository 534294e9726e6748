"""Spend caps: the install's daily cap (SPEND_DAILY_USD), a guild's daily and monthly caps and its per-member daily
cap (/atelier budget). Pure arithmetic and wording; the store checks them in the transaction that records a job.

Amounts are integer micro-dollars (bot.money.prices). Days and months are UTC calendar periods.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from bot.errors import QuotaError
from bot.money.prices import MICRO_PER_USD

CapName = Literal["install_daily", "guild_daily", "guild_monthly", "member_daily"]
CAP_LABELS: dict[CapName, str] = {
    "install_daily": "this installation's daily spend cap (SPEND_DAILY_USD)",
    "guild_daily": "this server's daily budget",
    "guild_monthly": "this server's monthly budget",
    "member_daily": "this server's daily budget per member",
}
BUDGET_KEY = "budget"  # the guild setting that holds a guild's caps
CHEAPEST = "cheapest"  # a guild's provider order that follows price (/atelier providers)
NOTICE_SHARE = Decimal("0.8")  # a guild's admins hear once when its spend passes this share of a cap


def usd(micro: int) -> str:
    """Micro-dollars as dollars for people: cents when whole, else up to six decimals."""
    value = Decimal(micro) / MICRO_PER_USD
    text = f"{value:.6f}".rstrip("0")
    whole, _, frac = text.partition(".")
    return f"${whole}.{frac.ljust(2, '0')}"


def to_micro(amount: Decimal) -> int:
    """Dollars (a budget) as micro-dollars; a budget finer than a micro-dollar is refused, not rounded."""
    micro = amount * MICRO_PER_USD
    if micro != micro.to_integral_value():
        raise ValueError(f"${amount} is finer than a millionth of a dollar")
    return int(micro)


def parse_budget_amount(text: str) -> int | None:
    """A budget as a member types it: "5", "5.00", "$5"; "off" or "none" removes that cap (None)."""
    cleaned = text.strip().lower().removeprefix("$").strip()
    if cleaned in ("off", "none", "no", "-"):
        return None
    try:
        amount = Decimal(cleaned)
    except ArithmeticError:
        raise ValueError(f"{text[:20]!r} is not an amount in dollars (e.g. 5 or 2.50), or 'off'") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{text[:20]!r}: a budget is 0 dollars or more")
    if amount > 1_000_000:
        raise ValueError(f"{text[:20]!r}: a budget is at most $1,000,000")
    return to_micro(amount)


@dataclass(frozen=True, slots=True)
class GuildBudget:
    """A guild's caps in micro-dollars (None: no cap) and who set them (told when 80% is passed)."""

    daily: int | None = None
    monthly: int | None = None
    member_daily: int | None = None
    set_by: str | None = None

    @classmethod
    def from_setting(cls, value: Any) -> GuildBudget:
        if not isinstance(value, dict):
            return cls()

        def amount(name: str) -> int | None:
            raw = value.get(name)
            return int(raw) if isinstance(raw, int) and raw >= 0 else None

        set_by = value.get("set_by")
        return cls(daily=amount("daily"), monthly=amount("monthly"), member_daily=amount("member_daily"),
                   set_by=str(set_by) if set_by else None)

    def to_setting(self) -> dict[str, Any]:
        return {"daily": self.daily, "monthly": self.monthly, "member_daily": self.member_daily,
                "set_by": self.set_by}

    @property
    def any(self) -> bool:
        return any(c is not None for c in (self.daily, self.monthly, self.member_daily))


def day_bounds(now: datetime) -> tuple[datetime, datetime]:
    start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def month_bounds(now: datetime) -> tuple[datetime, datetime]:
    start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (start + timedelta(days=32)).replace(day=1)
    return start, following


@dataclass(frozen=True, slots=True)
class CapState:
    """One cap as it stands: what is spent (reserved and settled) in its period, and when the period ends."""

    name: CapName
    limit: int
    spent: int
    resets_at: datetime

    @property
    def left(self) -> int:
        return max(0, self.limit - self.spent)


class SpendCapError(QuotaError):
    """A spend cap does not allow this job. Nothing was recorded, sent or charged."""

    def __init__(self, message: str, *, cap: CapState, cost: int) -> None:
        super().__init__(message, kind=cap.name, limit=cap.limit, used=cap.spent, resets_at=cap.resets_at)
        self.cap = cap
        self.cost = cost


def _resets(cap: CapState, now: datetime) -> str:
    when = "00:00 UTC on the 1st" if cap.name == "guild_monthly" else "00:00 UTC"
    delta = cap.resets_at - now
    hours = max(1, int(delta.total_seconds() // 3600))
    return f"it resets at {when} (in {hours // 24} d {hours % 24} h)" if hours >= 24 else \
        f"it resets at {when} (in about {hours} h)"


def refusal(cap: CapState, *, cost: int, now: datetime) -> SpendCapError:
    label = CAP_LABELS[cap.name]
    if cap.limit == 0:
        text = f"Paid jobs are off: {label} is {usd(0)}. Free filters (local) still run."
    else:
        text = (f"This job would cost up to {usd(cost)}, but {label} has {usd(cap.left)} of {usd(cap.limit)} "
                f"left; {_resets(cap, now)}.")
    return SpendCapError(text, cap=cap, cost=cost)


def first_exceeded(caps: list[CapState], cost: int, *, now: datetime) -> SpendCapError | None:
    """The refusal of the first cap this job's worst-case cost would overshoot; None when all allow it."""
    if cost <= 0:
        return None  # a free job (local) runs whatever the caps say
    for cap in caps:
        if cap.spent + cost > cap.limit:
            return refusal(cap, cost=cost, now=now)
    return None


def reached_notice_share(cap: CapState) -> bool:
    """Whether a cap's period has spent 80% of it or more (its admins are told once per period)."""
    return cap.limit > 0 and Decimal(cap.spent) >= Decimal(cap.limit) * NOTICE_SHARE
