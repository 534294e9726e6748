"""Settings, read from the environment and a `.env` file. Every setting is documented in `.env.example`.

One class per area (bot.config: providers, calls and polling, webhooks, image limits, storage, quotas, Discord,
money, operating the process);
`Settings` is all of them at once, so each setting keeps its environment name and its flat attribute.
Keys are SecretStr: they never appear in logs, errors or reprs. A provider with no key is disabled.
"""

from __future__ import annotations

from bot.config.area import Area
from bot.config.calls import CallSettings
from bot.config.discord import DiscordSettings
from bot.config.limits import ImageLimitSettings
from bot.config.money import MoneySettings
from bot.config.ops import OpsSettings
from bot.config.providers import ProviderSettings
from bot.config.store import QuotaSettings, StoreSettings
from bot.config.webhooks import WebhookSettings


# The bases are listed last area first: pydantic gathers fields base by base from the end of the MRO, so the
# fields come out in .env.example's order (providers first, logging last).
class Settings(OpsSettings, MoneySettings, DiscordSettings, QuotaSettings, StoreSettings, ImageLimitSettings,
               WebhookSettings, CallSettings, ProviderSettings):
    model_config = Area.model_config


__all__ = ["CallSettings", "DiscordSettings", "ImageLimitSettings", "MoneySettings", "OpsSettings", "ProviderSettings",
           "QuotaSettings", "Settings", "StoreSettings", "WebhookSettings"]
