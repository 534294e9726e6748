"""Numbers, money and durations as a member's language writes them (Babel's CLDR data). English keeps the exact
forms Atelier has always shown ("45%", "1 min 5 s", "$0.05"), which its members and tests know."""

from __future__ import annotations

from decimal import Decimal

from babel.numbers import format_currency, format_decimal, format_percent

from bot.i18n.catalogs import translate
from bot.i18n.locales import ENGLISH, babel_locale, normalise
from bot.money.caps import usd
from bot.money.prices import MICRO_PER_USD


def number(locale: object, value: int | float) -> str:
    name = normalise(locale)
    if name == ENGLISH and isinstance(value, int):
        return str(value)
    return format_decimal(value, locale=babel_locale(name))


def percent(locale: object, value: float) -> str:
    """`value` in percent (45.0 -> "45%", "45 %" in German and French), no decimals."""
    name = normalise(locale)
    if name == ENGLISH:
        return f"{value:.0f}%"
    return format_percent(value / 100, locale=babel_locale(name))


def duration(locale: object, seconds: int) -> str:
    """A short, exact duration: "12 s", "3 min 4 s" (Babel's own timedelta formats round to one unit)."""
    if seconds >= 60:
        return translate(locale, "{minutes} min {seconds} s", minutes=number(locale, seconds // 60),
                         seconds=number(locale, seconds % 60))
    return translate(locale, "{seconds} s", seconds=number(locale, seconds))


def money(locale: object, micro: int) -> str:
    """Micro-dollars as the language writes US dollars ("0,629146 $" in German), every significant decimal kept:
    an estimate of $0.629146 is not $0.63."""
    name = normalise(locale)
    if name == ENGLISH:
        return usd(micro)
    return format_currency(Decimal(micro) / MICRO_PER_USD, "USD", locale=babel_locale(name), decimal_quantization=False)
