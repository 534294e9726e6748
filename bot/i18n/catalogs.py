"""The compiled catalogs (bot/i18n/locale/<lang>/LC_MESSAGES/atelier.mo), loaded once per language.

The `.mo` files are committed next to their `.po` sources, so a fresh clone speaks every language without a build
step; tests/i18n checks that each committed `.mo` is exactly what its `.po` compiles to.
"""

from __future__ import annotations

import functools
import gettext
from pathlib import Path

from babel.support import NullTranslations, Translations

from bot.i18n.locales import CATALOGS, ENGLISH, normalise

DOMAIN = "atelier"
LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGES = (ENGLISH, *CATALOGS.values())


def N_(msgid: str) -> str:  # the name gettext's tools know
    """Marks a text for extraction where it is defined; it is translated where it is shown."""
    return msgid


@functools.cache
def catalog(name: str) -> gettext.NullTranslations:
    """The translations of one catalog name (see bot.i18n.locales); English, and any unknown name, translate to
    themselves."""
    if name == ENGLISH or name not in CATALOGS.values():
        return NullTranslations()
    return Translations.load(str(LOCALE_DIR), [name], domain=DOMAIN)


def translate(locale: object, msgid: str, /, **params: object) -> str:
    """`msgid` in `locale`'s language (a Discord locale or a catalog name), with `{name}` placeholders filled.
    A text the catalog lacks stays English."""
    text = catalog(normalise(locale)).gettext(msgid)
    return text.format(**params) if params else text
