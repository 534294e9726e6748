"""Webhooks: with a public URL set, fal and Novita call the bot when a job ends, and polling becomes a slow safety
net. The URL is where the outside world reaches WEBHOOK_PORT (e.g. through a reverse proxy)."""

from __future__ import annotations

from pydantic import Field, field_validator

from bot.config.area import Area, http_base_url


class WebhookSettings(Area):
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

    @field_validator("fal_jwks_url")
    @classmethod
    def _jwks_url(cls, value: str) -> str:
        return http_base_url(value)

    @field_validator("webhook_public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be empty (no webhooks) or start with http:// or https://")
        return value

    def webhook_url(self, provider: str) -> str | None:
        """Where `provider` should call when a job ends, or None when webhooks are off."""
        return f"{self.webhook_public_url}/webhooks/{provider}" if self.webhook_public_url else None
