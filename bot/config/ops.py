"""Operating the process: logging, the metrics and health port, and how long a SIGTERM may take."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from bot.config.area import Area, blank_is_none


class OpsSettings(Area):
    log_level: str = "INFO"
    # text: one human-readable line per record; json: one JSON object per line (job id, provider, guild).
    log_format: Literal["text", "json"] = "text"
    # /metrics, /healthz and /readyz on this port (unset: not served; 0: any free port, logged at start).
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"  # noqa: S104 - scraped from outside the container
    # After SIGTERM: new work is refused, submits on the wire store their handles, leases go back; exit within.
    shutdown_grace_s: float = Field(default=30.0, gt=0, le=3600)

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _blank_metrics_port_is_none(cls, value: object) -> object:
        return blank_is_none(value)

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format_lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value
