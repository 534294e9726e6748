"""A member's own: /settings (what their commands use when they say nothing else — size, count, results by DM,
"my photo" for try-on) and /forget (delete what identifies them). Always private."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_bot import AtelierBot
from bot.discord_errors import AtelierView, handled, report_interaction
from bot.discord_mentions import NOBODY
from bot.errors import Refusal, Term
from bot.i18n import N_, translate
from bot.store.models import MemberPrefs
from cogs._common import Interaction, acknowledge, answer, guild_context, read_attachment
from cogs._render import SIZE_CHOICES

SIZES = [app_commands.Choice(name=label, value=value) for value, label in SIZE_CHOICES.items()]
CLEARABLE = [app_commands.Choice(name="size", value="size"), app_commands.Choice(name="count", value="count"),
             app_commands.Choice(name="my photo", value="photo"),
             app_commands.Choice(name="everything", value="everything")]


def describe(prefs: MemberPrefs, locale: object = None) -> str:
    """The member's settings, in `locale`'s language (their Discord client's)."""
    label = SIZE_CHOICES.get(prefs.size) if prefs.size else N_("the provider's default")
    size = translate(locale, label) if label else str(prefs.size)
    photo = translate(locale, "saved ({width}x{height})", width=prefs.photo.width, height=prefs.photo.height) \
        if prefs.photo else translate(locale, "none")
    where = translate(locale, "by direct message") if prefs.private_delivery else translate(locale, "in the channel")
    return translate(locale, "**Your settings** (used wherever you do not say otherwise)\nSize: {size} · Images per "
                     "job: {count} · Results: {where} · My photo (for try-on): {photo}", size=size,
                     count=prefs.count or 1, where=where, photo=photo)


class Members(commands.Cog):
    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(ForgetButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(ForgetButton)

    @app_commands.command(name="settings", description="Your defaults: size, count, results by DM, your photo")
    @app_commands.describe(size="Default output shape for /edit and /imagine",
                           count="Default number of images for /edit and /imagine (1-4)",
                           private="Send your results to you by direct message instead of the channel",
                           photo="A photo of you: the person in /tryon when you attach none",
                           clear="Forget one setting (or all of them)")
    @app_commands.choices(size=SIZES, clear=CLEARABLE)
    @app_commands.guild_only()
    async def settings(self, interaction: Interaction, size: app_commands.Choice[str] | None = None,
                       count: app_commands.Range[int, 1, 4] | None = None, private: bool | None = None,
                       photo: discord.Attachment | None = None,
                       clear: app_commands.Choice[str] | None = None) -> None:
        async with handled(interaction, "/settings"):
            await acknowledge(interaction)
            await guild_context(interaction, "settings")
            engine = self.bot.engine
            prefs = await engine.member_prefs(interaction.user.id)
            changes: dict[str, object] = {}
            if clear is not None and clear.value == "everything":
                prefs = MemberPrefs(user_id=prefs.user_id)
            elif clear is not None:
                changes[clear.value] = None
            if size is not None:
                changes["size"] = size.value
            if count is not None:
                changes["count"] = count
            if private is not None:
                changes["private_delivery"] = private
            if photo is not None:
                # Checked like any input image (type, size, dimensions) before it is kept.
                changes["photo"] = await engine.keep_photo(await read_attachment(self.bot, photo, Term(N_("photo"))))
            prefs = dataclasses.replace(prefs, **changes)  # type: ignore[arg-type]
            if clear is not None or changes:
                await engine.save_member_prefs(prefs)
            await answer(interaction, describe(prefs, interaction.locale))


    @app_commands.command(name="forget", description="Delete your prompts, images, settings and photo here")
    async def forget(self, interaction: Interaction) -> None:
        async with handled(interaction, "/forget"):
            await interaction.response.send_message(translate(
                interaction.locale, "This deletes, in every server this bot serves: your prompts, your images "
                "(inputs and results), your /settings and your saved photo. What you used still counts toward quotas "
                "and budgets, without your name. It cannot be undone."),
                view=forget_view(interaction.user.id, interaction.locale), ephemeral=True, allowed_mentions=NOBODY)


class ForgetButton(discord.ui.DynamicItem[discord.ui.Button[Any]],
                   template=r"atelier:v2:forget:(?P<user>[0-9]{1,20}):(?P<choice>yes|no)"):
    """The one step between /forget and forgetting. Stateless (the member's id is in its custom_id), so it works
    after a restart too; only that member can see it (the message is private), and only they may use it."""

    def __init__(self, user_id: int, choice: str, locale: object = None) -> None:
        label, style = (N_("Forget me"), discord.ButtonStyle.danger) if choice == "yes" else \
            (N_("Keep everything"), discord.ButtonStyle.secondary)
        super().__init__(discord.ui.Button(label=translate(locale, label), style=style,
                                           custom_id=f"atelier:v2:forget:{user_id}:{choice}"))
        self.user_id = user_id
        self.choice = choice

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> ForgetButton:
        return cls(int(match["user"]), match["choice"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        try:
            await self._act(interaction)
        except Exception as exc:
            await report_interaction(interaction, exc, "the /forget button")

    async def _act(self, interaction: Interaction) -> None:
        if interaction.user.id != self.user_id:
            raise Refusal(N_("Only the member who asked can answer this."))
        locale = interaction.locale  # the member's, as the question was
        if self.choice == "no":
            await interaction.response.edit_message(content=translate(locale, "Nothing was deleted."), view=None)
            return
        await interaction.response.edit_message(content=translate(locale, "Forgetting you…"), view=None)
        done = await interaction.client.engine.forget(self.user_id)
        if done is None:
            text = translate(locale, "You have a job still running (or its result is on its way): nothing was "
                             "deleted. Try again once it has finished, or /cancel it.")
        else:
            text = translate(locale, "Done: {jobs} job(s) no longer name you, and {images} image(s) and your settings "
                             "are deleted.", jobs=done.jobs, images=len(done.blobs))
        await interaction.edit_original_response(content=text)


def forget_view(user_id: int, locale: object = None) -> discord.ui.View:
    view = AtelierView(timeout=None)
    view.add_item(ForgetButton(user_id, "yes", locale))
    view.add_item(ForgetButton(user_id, "no", locale))
    return view


async def setup(bot: AtelierBot) -> None:
    await bot.add_cog(Members(bot))
