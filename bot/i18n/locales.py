"""Which catalog a Discord locale reads: Discord sends "de", "pt-BR", "es-ES", "en-US", "es-419", …; Atelier has
one catalog per language it speaks, and English for everything else."""

from __future__ import annotations

ENGLISH = "en"
# The catalogs there are (bot/i18n/locale/<name>), by the Discord locale that names them.
CATALOGS = {"de": "de", "es-ES": "es_ES", "fr": "fr", "pt-BR": "pt_BR", "ja": "ja"}
# A regional variant with no catalog of its own reads its language's (Latin American Spanish reads Spain's).
BY_LANGUAGE = {code.split("-")[0]: name for code, name in CATALOGS.items()}


def normalise(locale: object) -> str:
    """The catalog for a Discord locale (a `discord.Locale`, its string, or None); English when there is none."""
    text = str(getattr(locale, "value", locale) or "").strip().replace("_", "-")
    if not text:
        return ENGLISH
    for code, name in CATALOGS.items():
        if text.lower() == code.lower():
            return name
    return BY_LANGUAGE.get(text.split("-")[0].lower(), ENGLISH)


def babel_locale(name: str) -> str:
    """The Babel/CLDR identifier of a catalog, for formatting numbers and durations."""
    return "en_US" if name == ENGLISH else name
