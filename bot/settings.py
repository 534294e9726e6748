"""Settings, read from the environment and a `.env` file. Every setting is documented in `.env.example`.

Keys are SecretStr: they never appear in logs, errors or reprs. A provider with no key is disabled.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.images import ImageLimits
from bot.money.prices import PriceBook, parse_overrides


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # Providers. Base URLs are scheme and host only; adapters append their paths.
    glam_api_key: SecretStr | None = None
    glam_base_url: str = "https://api.glam.ai"
    fal_key: SecretStr | None = None
    fal_queue_url: str = "https://queue.fal.run"
    pixazo_api_key: SecretStr | None = None
    pixazo_base_url: str = "https://gateway.pixazo.ai"
    novita_api_key: SecretStr | None = None
    novita_base_url: str = "https://api.novita.ai"
    # Which model Atelier uses at Novita. GLM Image was retired there on 2026-07-07; Novita names Seedream 5.0
    # lite as its replacement, so that is the default. glm-image is kept for accounts where it still answers.
    novita_model: Literal["seedream-5.0-lite", "glm-image"] = "seedream-5.0-lite"
    # Seedream marks its output as AI-made unless told not to (its default is true); Atelier asks for no mark
    # unless the operator wants one.
    novita_watermark: bool = False
    # Seedream answers with the images in the submit's own response: that one call may last a minute.
    novita_sync_timeout_s: float = Field(default=120.0, gt=0)
    # A model found retired at a provider is skipped by every process for this long before it is tried again.
    retired_model_mark_s: float = Field(default=3600.0, gt=0)

    # Per-provider limits: jobs running at once, and HTTP requests per second (0 = unlimited).
    glam_max_parallel: int = Field(default=2, ge=1)
    fal_max_parallel: int = Field(default=4, ge=1)
    pixazo_max_parallel: int = Field(default=2, ge=1)
    novita_max_parallel: int = Field(default=2, ge=1)
    local_max_parallel: int = Field(default=2, ge=1)
    provider_requests_per_second: float = Field(default=10.0, ge=0)

    # HTTP behaviour shared by every adapter.
    http_timeout_s: float = Field(default=30.0, gt=0)
    http_max_attempts: int = Field(default=5, ge=1, le=20)
    http_backoff_base_s: float = Field(default=0.5, ge=0)
    job_deadline_s: float = Field(default=600.0, gt=0)
    # Per-operation deadlines overriding JOB_DEADLINE_S, as JSON: {"filter": 120, "tryon": 300}.
    job_deadlines: dict[str, float] = {}
    # Poll schedule: shortest and longest gap between two polls of one job, and with no better hint, the share
    # of a job's age to wait before looking again (0.02: a result waits about 1% of the job's duration).
    poll_min_s: float = Field(default=0.2, gt=0)
    poll_max_s: float = Field(default=10.0, gt=0)
    poll_age_fraction: float = Field(default=0.02, gt=0, le=1)

    # Webhooks: with a public URL set, fal and Novita call the bot when a job ends, and polling becomes a slow
    # safety net. The URL is where the outside world reaches WEBHOOK_PORT (e.g. through a reverse proxy).
    webhook_public_url: str = ""
    webhook_host: str = "0.0.0.0"  # noqa: S104 - the listener must be reachable from outside the container
    webhook_port: int = Field(default=8080, ge=1, le=65535)
    webhook_safety_poll_s: float = Field(default=30.0, gt=0)
    # A caller must send its request headers within this many seconds of connecting, and its body within as
    # many again; at most WEBHOOK_MAX_CONNECTIONS are open at once (one more is answered 503 and closed).
    webhook_read_timeout_s: float = Field(default=10.0, gt=0)
    webhook_max_connections: int = Field(default=256, ge=1)
    # Where fal publishes the public keys that sign its webhook calls (cached; refetched on an unknown key).
    fal_jwks_url: str = "https://rest.alpha.fal.ai/.well-known/jwks.json"

    # Atelier's own input limits, applied where a provider's are unknown.
    max_input_mb: float = Field(default=20.0, gt=0)
    max_input_megapixels: float = Field(default=36.0, gt=0)
    min_input_side: int = Field(default=64, ge=1)
    max_prompt_chars: int = Field(default=1000, ge=1)
    max_output_mb: float = Field(default=50.0, gt=0)
    # Output images on loopback, private or link-local addresses are refused unless this is true (local test
    # servers need it); outputs on the provider's own configured host are always allowed.
    allow_private_output_urls: bool = False
    # Provider outputs are decoded to check them: more pixels than this are refused from the header.
    max_output_megapixels: float = Field(default=36.0, gt=0)

    # Store, quotas, runner.
    database_url: str = "sqlite:///data/atelier.db"
    # How long a new command or setting waits while another program holds the database locked (a backup, a
    # VACUUM) before it is refused as "busy"; a job already running waits until its own deadline.
    database_busy_timeout_s: float = Field(default=30.0, gt=0)
    quota_daily: int = Field(default=25, ge=0)
    quota_concurrent: int = Field(default=3, ge=1)
    retention_days: float = Field(default=7.0, gt=0)
    lease_seconds: float = Field(default=30.0, gt=0)
    # Failed attempts to deliver one finished job before it is marked undeliverable (about 76 minutes of
    # retries with the default backoff of 2 s, 5 s, 15 s, 60 s, then every 5 minutes).
    delivery_max_attempts: int = Field(default=20, ge=1)

    # Discord.
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

    log_level: str = "INFO"

    # Money (README "Budgets"): price overrides as JSON ({"pixazo.imagine": "0.05", "fal.edit": "0.05/MP"}), the
    # dollars one Glam credit costs, and what all jobs of this install may cost per UTC day (unset: no cap; 0: no
    # paid job at all). Decimal, never float: "0.10" stays exactly ten cents.
    prices: str = ""
    glam_usd_per_credit: Decimal | None = Field(default=None, gt=0, le=100)
    spend_daily_usd: Decimal | None = Field(default=None, ge=0, le=1_000_000)

    @field_validator("prices")
    @classmethod
    def _prices_parse(cls, value: str) -> str:
        parse_overrides(value)  # the error names the first bad entry
        return value

    @field_validator("glam_usd_per_credit", "spend_daily_usd", mode="before")
    @classmethod
    def _blank_amount_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, float):
            raise ValueError('write the amount as text such as "0.10", not a binary float')  # noqa: TRY004 - pydantic
        return value

    @field_validator("spend_daily_usd")
    @classmethod
    def _whole_micro_dollars(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and (value * 1_000_000) != (value * 1_000_000).to_integral_value():
            raise ValueError("must be whole millionths of a dollar at most (e.g. 0.10)")
        return value

    @property
    def price_book(self) -> PriceBook:
        return PriceBook(parse_overrides(self.prices), glam_usd_per_credit=self.glam_usd_per_credit)

    @property
    def spend_daily_micro(self) -> int | None:
        return None if self.spend_daily_usd is None else int(self.spend_daily_usd * 1_000_000)

    @field_validator("glam_base_url", "fal_queue_url", "pixazo_base_url", "novita_base_url", "fal_jwks_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("glam_api_key", "fal_key", "pixazo_api_key", "novita_api_key", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        # An empty KEY= line in .env means "not configured", not "a key that is the empty string".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("webhook_public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be empty (no webhooks) or start with http:// or https://")
        return value

    @field_validator("job_deadlines")
    @classmethod
    def _known_operations(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = set(value) - {"tryon", "filter", "edit", "imagine"}
        if unknown:
            raise ValueError(f"unknown operation(s) {sorted(unknown)}: use tryon, filter, edit, imagine")
        if any(v <= 0 for v in value.values()):
            raise ValueError("deadlines must be positive numbers of seconds")
        return value

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
        if isinstance(value, str) and not value.strip():
            return None
        return value

    def webhook_url(self, provider: str) -> str | None:
        """Where `provider` should call when a job ends, or None when webhooks are off."""
        return f"{self.webhook_public_url}/webhooks/{provider}" if self.webhook_public_url else None

    @property
    def image_limits(self) -> ImageLimits:
        return ImageLimits(
            max_bytes=int(self.max_input_mb * 1024 * 1024),
            max_megapixels=self.max_input_megapixels,
            min_side=self.min_input_side,
        )

    @property
    def max_output_bytes(self) -> int:
        return int(self.max_output_mb * 1024 * 1024)
