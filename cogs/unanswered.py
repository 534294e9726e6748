"""The last word on a form nothing will answer: forms live in memory, so one opened before the bot restarted has no
handler any more. The member is told at once to start again, instead of Discord's "This interaction failed".

(Buttons need no such thing: every button Atelier posts is stateless, named by its custom_id.)"""

from __future__ import annotations

import contextlib
import logging

import discord
from discord.ext import commands

from bot.discord_bot import AtelierBot
from bot.discord_mentions import NOBODY
from bot.i18n import N_, translate

log = logging.getLogger(__name__)

EXPIRED = N_("This form has expired (the bot restarted since it was shown). Please start again.")


def has_form(bot: AtelierBot, custom_id: str) -> bool:
    """Whether discord.py holds a live form with this id. It keeps them in its view store and dispatches a submit
    before telling listeners, removing the form only once its handler has run: so at on_interaction, a live form
    is still there. (A private attribute: tests/discord/test_remix.py notices if discord.py changes it.)"""
    modals = getattr(getattr(bot._connection, "_view_store", None), "_modals", None)
    return modals is None or custom_id in modals  # unknown layout: assume it is handled rather than answer twice


class Unanswered(commands.Cog):
    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction[AtelierBot]) -> None:
        if interaction.type is not discord.InteractionType.modal_submit:
            return
        custom_id = str(dict(interaction.data or {}).get("custom_id", ""))
        if has_form(self.bot, custom_id) or interaction.response.is_done():
            return
        log.info("form %r was submitted after a restart: the member is told it expired", custom_id[:40])
        with contextlib.suppress(discord.HTTPException):
            await interaction.response.send_message(translate(interaction.locale, EXPIRED), ephemeral=True,
                                                    allowed_mentions=NOBODY)


async def setup(bot: AtelierBot) -> None:
    await bot.add_cog(Unanswered(bot))
