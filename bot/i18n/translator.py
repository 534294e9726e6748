"""The command tree's translator: descriptions and choice names from the catalogs, in every language Atelier has.

Command, group and option names stay English on purpose: they are what the README, the help texts and other
members' messages say (`/imagine`), Discord's picker matches what a member types against both the localized and the
default name anyway, and one name everywhere keeps a server of mixed languages talking about the same command.
Context menus are the exception: their names are phrases in the Apps menu ("Edit this image"), never typed.
"""

from __future__ import annotations

import discord
from discord import app_commands

from bot.i18n.catalogs import catalog
from bot.i18n.locales import ENGLISH, normalise

KEPT = frozenset({app_commands.TranslationContextLocation.command_name,
                  app_commands.TranslationContextLocation.group_name,
                  app_commands.TranslationContextLocation.parameter_name})


class CatalogTranslator(app_commands.Translator):
    async def translate(self, string: app_commands.locale_str, locale: discord.Locale,
                        context: app_commands.TranslationContextTypes) -> str | None:
        name = normalise(locale)
        if name == ENGLISH or (context.location in KEPT and not isinstance(context.data, app_commands.ContextMenu)):
            return None  # a context menu's name is a phrase in the Apps menu, not something members type
        text = catalog(name).gettext(string.message)
        # None tells discord.py to send no localization: Discord then shows the English text.
        return text if text != string.message else None
