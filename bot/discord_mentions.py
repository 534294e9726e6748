"""Who a message from Atelier may ping: nobody, or exactly the member a message is for.

Prompts, filter names and provider errors are shown in public messages and may contain `<@id>`, `<@&role>`,
`@everyone` or `@here`. Discord pings whatever a message's `allowed_mentions` lets through, so every message the
bot sends names the only person it may ping, and the bot's default (for anything that forgets) is nobody.
"""

from __future__ import annotations

import discord

NOBODY = discord.AllowedMentions.none()


def only(user_id: int | str) -> discord.AllowedMentions:
    """Ping this member and nobody else: no roles, no @everyone/@here, no other user, not the replied-to author."""
    return discord.AllowedMentions(everyone=False, roles=False, users=[discord.Object(id=int(user_id))],
                                   replied_user=False)
