"""Usage in money: a spend report's rows summed by day, member, command and provider, and as CSV."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal

from bot.money.prices import MICRO_PER_USD
from bot.store.models import SpendRow

CSV_COLUMNS = ("date", "guild_id", "user_id", "operation", "provider", "jobs", "images", "usd")


def usd_text(micro: int) -> str:
    """Micro-dollars as a plain decimal with up to six places (CSV): 50000 -> "0.05", 1 -> "0.000001"."""
    text = f"{Decimal(micro) / MICRO_PER_USD:.6f}".rstrip("0").rstrip(".")
    return text or "0"


def to_csv(rows: Iterable[SpendRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow((r.date, r.guild_id, r.user_id, r.operation, r.provider, r.jobs, r.images,
                         usd_text(r.micro)))
    return out.getvalue()


def totals_by(rows: Iterable[SpendRow], field: str) -> list[tuple[str, int, int, int]]:
    """(value of `field`, jobs, images, micro-dollars), dearest first (days in date order)."""
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in rows:
        entry = sums[str(getattr(r, field))]
        entry[0] += r.jobs
        entry[1] += r.images
        entry[2] += r.micro
    items = [(key, v[0], v[1], v[2]) for key, v in sums.items()]
    if field == "date":
        return sorted(items)
    return sorted(items, key=lambda item: (-item[3], item[0]))
