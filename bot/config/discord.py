"""Discord: the bot's token, where commands are synced, and where Discord is (changed only for a test double)."""

from __future__ import annotations

from pydantic import SecretStr, field_validator

from bot.config.area import Area, blank_is_none


class DiscordSettings(Area):
    discord_token: SecretStr | None = None
    # Comma-separated guild ids: commands are synced to these guilds at start-up (instant), else globally.
    discord_guild_ids: str = ""
    # Where Discord's REST API and gateway are; only changed to point the bot at a local test double.
    discord_api_base: str = "https://discord.com/api/v10"
    discord_gateway_url: str = ""
    # Owners' rules. Comma-separated guild ids this install serves (empty: any guild that invites it);
    # with the list set, commands are synced to those guilds only and, with DISCORD_LEAVE_OTHER_GUILDS, the bot
    # leaves any other guild it finds itself in. PROMPT_BLOCKLIST_FILE: one blocklist entry a line, for every guild.
    discord_allowed_guilds: str = ""
    discord_leave_other_guilds: bool = False
    prompt_blocklist_file: str = ""

    @property
    def guild_ids(self) -> list[int]:
        return [int(part) for part in self.discord_guild_ids.replace(" ", "").split(",") if part]

    @property
    def allowed_guilds(self) -> frozenset[int]:
        return frozenset(int(part) for part in self.discord_allowed_guilds.replace(" ", "").split(",") if part)

    @field_validator("discord_guild_ids", "discord_allowed_guilds")
    @classmethod
    def _guild_ids_are_numbers(cls, value: str) -> str:
        for part in value.replace(" ", "").split(","):
            if part and not part.isdigit():
                raise ValueError(f"{part[:30]!r} is not a guild id (a number)")
        return value

    @field_validator("discord_token", mode="before")
    @classmethod
    def _blank_token_is_none(cls, value: object) -> object:
        return blank_is_none(value)
