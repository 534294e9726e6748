"""`atelier usage` (spend in dollars for an operator) and the price table `atelier doctor` prints."""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime, time, timedelta
from typing import TypeVar

from bot.money.caps import usd
from bot.money.prices import DEFAULTS, PriceBook
from bot.money.usage import to_csv, totals_by
from bot.settings import Settings
from bot.store.base import JobStore


def utc_date(text: str) -> datetime:
    """An argparse type: YYYY-MM-DD, the start of that UTC day."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a date: write YYYY-MM-DD") from None
    return datetime.combine(day, time(0), tzinfo=UTC)


P = TypeVar("P", bound=argparse.ArgumentParser)


def add_usage_parser(sub: argparse._SubParsersAction[P]) -> None:
    usage = sub.add_parser("usage", help="spend in dollars by day, member, command and provider")
    usage.add_argument("--guild", help="a Discord guild id (default: every guild and the command line)")
    usage.add_argument("--since", required=True, type=utc_date, help="first UTC day, YYYY-MM-DD")
    usage.add_argument("--csv", action="store_true",
                       help="CSV: date,guild_id,user_id,operation,provider,jobs,images,usd")


async def print_usage(store: JobStore, args: argparse.Namespace, *, now: datetime) -> None:
    if args.guild is not None and not str(args.guild).isdigit() and args.guild != "cli":
        raise ValueError(f"--guild {args.guild[:30]!r} is not a guild id (a number)")
    scope = None if args.guild is None else ("cli" if args.guild == "cli" else f"guild:{args.guild}")
    until = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    rows = await store.spend_report(scope, since=args.since, until=until)
    if args.csv:
        print(to_csv(rows), end="")
        return
    if not rows:
        print(f"no jobs since {args.since:%Y-%m-%d}")
        return
    total = sum(r.micro for r in rows)
    print(f"spend since {args.since:%Y-%m-%d} (UTC): {usd(total)} for {sum(r.jobs for r in rows)} job(s), "
          f"{sum(r.images for r in rows)} image(s)")
    for title, field in (("by day", "date"), ("by guild", "guild_id"), ("by member", "user_id"),
                         ("by command", "operation"), ("by provider", "provider")):
        print(f"{title}:")
        for key, jobs, images, micro in totals_by(rows, field):
            print(f"  {key or 'command line':<20}  {usd(micro):>12}  {jobs} job(s), {images} image(s)")


def price_lines(settings: Settings) -> list[str]:
    """One line per provider, model and operation: the price used, and whether any source backs it."""
    book: PriceBook = settings.price_book
    lines = []
    for key, price in book.table({"novita": settings.novita_model}):
        mark = "" if price.verified else "UNVERIFIED: "
        lines.append(f"price   {key:<34} {price!s:<14} {mark}{price.source}")
    extra = sorted(set(book.overrides) - set(DEFAULTS))
    lines += [f"price   {key:<34} {book.overrides[key]!s:<14} PRICES" for key in extra]
    cap = "no cap" if settings.spend_daily_usd is None else f"${settings.spend_daily_usd} per UTC day"
    lines.append(f"spend   SPEND_DAILY_USD: {cap}")
    return lines
