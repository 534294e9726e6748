"""Numbers and durations as a member's language writes them (Babel's CLDR data). English keeps the exact forms
Atelier has always shown ("45%", "1 min 5 s"), which its members and tests know."""

from __future__ import annotations

from babel.numbers import format_decimal, format_percent

from bot.i18n.catalogs import translate
from bot.i18n.locales import ENGLISH, babel_locale, normalise


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
