"""Discord: the bot's token, where commands are synced, and where Discord is (changed only for a test double)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator, model_validator

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
    # Gateway shards (bot.shards). Unset: one process connects one shard, as a small bot does. DISCORD_SHARD_COUNT
    # alone: processes on one PostgreSQL database each claim a free range of DISCORD_SHARDS_PER_PROCESS shards
    # (on SQLite the one process connects them all); with DISCORD_SHARD_IDS too: exactly those shards.
    discord_shard_count: int | None = Field(default=None, ge=1, le=10_000)
    discord_shard_ids: str = ""
    discord_shards_per_process: int = Field(default=1, ge=1, le=1_000)
    # Bot-token REST requests per second for the whole install, shared by its live processes (bot.discord_rest).
    # Discord allows 50 per token across every process; the default leaves room for what this install cannot see
    # (discord.py's retries, another tool using the same token).
    discord_rest_per_second: float = 40.0

    @property
    def guild_ids(self) -> list[int]:
        return [int(part) for part in self.discord_guild_ids.replace(" ", "").split(",") if part]

    @property
    def allowed_guilds(self) -> frozenset[int]:
        return frozenset(int(part) for part in self.discord_allowed_guilds.replace(" ", "").split(",") if part)

    @property
    def shard_ids(self) -> list[int] | None:
        """The shards named by DISCORD_SHARD_IDS, in order; None when unset."""
        ids = [int(part) for part in self.discord_shard_ids.replace(" ", "").split(",") if part]
        return sorted(set(ids)) or None

    @field_validator("discord_shard_ids")
    @classmethod
    def _shard_ids_are_numbers(cls, value: str) -> str:
        return _numbers(value, "a shard id (a number from 0)")

    @model_validator(mode="after")
    def _shards_fit_the_count(self) -> DiscordSettings:
        ids = self.shard_ids
        if ids is None:
            return self
        if self.discord_shard_count is None:
            raise ValueError("DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT: the shard ids are out of how many shards")
        outside = [i for i in ids if i >= self.discord_shard_count]
        if outside:
            raise ValueError(f"DISCORD_SHARD_IDS {outside[:5]} are not below DISCORD_SHARD_COUNT="
                             f"{self.discord_shard_count} (shards are numbered from 0)")
        return self

    @field_validator("discord_guild_ids", "discord_allowed_guilds")
    @classmethod
    def _guild_ids_are_numbers(cls, value: str) -> str:
        return _numbers(value, "a guild id (a number)")

    @field_validator("discord_rest_per_second")
    @classmethod
    def _within_discords_limit(cls, value: float) -> float:
        if not 0 < value <= 50:
            raise ValueError(f"must be more than 0 and at most 50 (Discord allows 50 requests per second per bot "
                             f"token, across all processes), not {value:g}")
        return value

    @field_validator("discord_token", "discord_shard_count", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return blank_is_none(value)


def _numbers(value: str, what: str) -> str:
    """A comma-separated list of ids, each a number; else the first that is not, named as `what`."""
    for part in value.replace(" ", "").split(","):
        if part and not part.isdigit():
            raise ValueError(f"{part[:30]!r} is not {what}")
    return value
