"""Work on any image in the channel, the bot's results included: message context menus (Apps → …) that open a
form asking for what the image lacks, then run the job as its slash command would."""

from __future__ import annotations

from collections.abc import Callable

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_bot import AtelierBot
from bot.discord_errors import report_interaction
from bot.i18n import N_
from cogs._common import Interaction
from cogs._menus import EditForm, FilterForm, ImageForm, TryonForm

# Menu names are shown in the Apps menu as they are: the translator gives them in the member's language.
EDIT, FILTER, AS_GARMENT, AS_PERSON = N_("Edit this image"), N_("Apply a filter"), N_("Try on: use as garment"), \
    N_("Try on: use as person")


class Menus(commands.Cog):
    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot
        self.menus = [
            self._menu(EDIT, lambda message, locale: EditForm(bot, message, locale)),
            self._menu(FILTER, lambda message, locale: FilterForm(bot, message, locale)),
            self._menu(AS_GARMENT, lambda message, locale: TryonForm(bot, message, "garment", locale)),
            self._menu(AS_PERSON, lambda message, locale: TryonForm(bot, message, "person", locale)),
        ]

    def _menu(self, name: str,
              form: Callable[[discord.Message, discord.Locale], ImageForm]) -> app_commands.ContextMenu:
        async def opened(interaction: Interaction, message: discord.Message) -> None:
            # The form is the first response, within three seconds: nothing slow happens before it.
            try:
                await interaction.response.send_modal(form(message, interaction.locale))  # in the member's language
            except Exception as exc:
                await report_interaction(interaction, exc, f"the {name!r} menu")
        return app_commands.guild_only(app_commands.ContextMenu(name=name, callback=opened))

    async def cog_load(self) -> None:
        for menu in self.menus:
            self.bot.tree.add_command(menu)

    async def cog_unload(self) -> None:
        for menu in self.menus:
            self.bot.tree.remove_command(menu.name, type=menu.type)


async def setup(bot: AtelierBot) -> None:
    await bot.add_cog(Menus(bot))
