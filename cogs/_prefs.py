"""A member's /settings where a job is built: what they did not say, their preferences say."""

from __future__ import annotations

from discord import app_commands

from bot.discord_bot import AtelierBot
from bot.errors import Refusal
from bot.i18n import N_
from bot.operations import ImageInput, Size
from cogs._common import GuildContext


async def defaults(bot: AtelierBot, ctx: GuildContext, size: app_commands.Choice[str] | None,
                   count: int | None) -> tuple[Size | None, int]:
    """What the member said, else their /settings, else the provider's default size and one image."""
    prefs = await bot.engine.member_prefs(ctx.member.id)
    chosen = size.value if size is not None else prefs.size
    return (Size.parse(chosen) if chosen else None), count or prefs.count or 1


async def saved_photo(bot: AtelierBot, ctx: GuildContext) -> ImageInput:
    """The member's own photo from /settings, for a try-on without a person photo."""
    prefs = await bot.engine.member_prefs(ctx.member.id)
    photo = await bot.engine.photo_image(prefs.photo) if prefs.photo is not None else None
    if photo is None:
        raise Refusal(N_("Attach a photo of the person, or save yours once with `/settings photo:`."))
    return photo
