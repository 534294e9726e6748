"""What every area of the settings shares: where values come from, and the validators more than one area uses."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class Area(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")


def http_base_url(value: str) -> str:
    """Scheme and host, without a trailing slash: adapters append their paths."""
    value = value.strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value


def blank_is_none(value: object) -> object:
    """An empty KEY= line in .env means "not configured", not "a key that is the empty string"."""
    if isinstance(value, str) and not value.strip():
        return None
    return value
