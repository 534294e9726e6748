"""Atelier in the members' languages: gettext catalogs (bot/i18n/locale), Discord locales mapped onto them, and the
helpers the cogs call.

`translate(locale, msgid, **params)` is the one way code turns an English text into what a member reads; `N_` marks
a text for the catalogs where it is defined but translated later (a table of labels). English is the source
language: its texts are the msgids themselves, so English output never depends on a catalog.
"""

from bot.i18n.catalogs import LANGUAGES, N_, catalog, translate
from bot.i18n.locales import ENGLISH, normalise

__all__ = ["ENGLISH", "LANGUAGES", "N_", "catalog", "normalise", "translate"]
