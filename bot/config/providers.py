"""Providers: keys, where each API is, Novita's model, and how much of each provider Atelier may use at once."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from bot.config.area import Area, blank_is_none, http_base_url


class ProviderSettings(Area):
    # Base URLs are scheme and host only; adapters append their paths.
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

    # Per-provider limits: jobs running at once, and HTTP requests per second (0 = unlimited).
    glam_max_parallel: int = Field(default=2, ge=1)
    fal_max_parallel: int = Field(default=4, ge=1)
    pixazo_max_parallel: int = Field(default=2, ge=1)
    novita_max_parallel: int = Field(default=2, ge=1)
    local_max_parallel: int = Field(default=2, ge=1)
    provider_requests_per_second: float = Field(default=10.0, ge=0)

    @field_validator("glam_base_url", "fal_queue_url", "pixazo_base_url", "novita_base_url")
    @classmethod
    def _provider_base_urls(cls, value: str) -> str:
        return http_base_url(value)

    @field_validator("glam_api_key", "fal_key", "pixazo_api_key", "novita_api_key", mode="before")
    @classmethod
    def _blank_key_is_none(cls, value: object) -> object:
        return blank_is_none(value)
