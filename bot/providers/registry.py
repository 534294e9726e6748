"""Builds the configured providers from settings and chooses one per operation."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import aiohttp

from bot.errors import ConfigError
from bot.operations import Operation
from bot.providers.base import FilterInfo, Provider, ProviderLimits
from bot.providers.fal import FalProvider
from bot.providers.glam import GlamProvider
from bot.providers.http import HttpPolicy, ProviderHttp
from bot.providers.local import LocalProvider
from bot.providers.novita import NovitaProvider
from bot.providers.novita_seedream import NovitaSeedreamProvider
from bot.providers.pixazo import PixazoProvider
from bot.settings import Settings

# Which provider runs an operation when none is named: the first configured one, in this order.
DEFAULT_ORDER: Mapping[Operation, tuple[str, ...]] = {
    Operation.FILTER: ("glam", "local"),
    Operation.TRYON: ("glam",),
    # Novita serves edit only with Seedream 5.0 lite (GLM Image there is text-to-image only).
    Operation.EDIT: ("fal", "pixazo", "novita"),
    Operation.IMAGINE: ("novita", "pixazo", "fal"),
}
KNOWN = ("glam", "fal", "pixazo", "novita", "local")


class Providers:
    """The providers this process may use, keyed by name."""

    def __init__(self, providers: Mapping[str, Provider]) -> None:
        self._providers = dict(providers)

    def __contains__(self, name: object) -> bool:
        return name in self._providers

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._providers.values())

    def get(self, name: str) -> Provider:
        if name not in KNOWN:
            raise ConfigError(f"Unknown provider {name[:40]!r}: use one of {', '.join(KNOWN)}.")
        if name not in self._providers:
            raise ConfigError(f"The provider {name} is not configured: set its API key (see .env.example).")
        return self._providers[name]

    def order(self, operation: Operation, preferred: Sequence[str] | None = None) -> list[Provider]:
        """Configured providers able to run the operation, in the (possibly guild-chosen) order."""
        names = preferred or DEFAULT_ORDER[operation]
        return [self._providers[n] for n in names if n in self._providers and self._providers[n].supports(operation)]

    def choose(self, operation: Operation, name: str | None = None, preferred: Sequence[str] | None = None) -> Provider:
        if name:
            provider = self.get(name)
            if not provider.supports(operation):
                raise ConfigError(f"The provider {name} does not offer {operation.value}.")
            return provider
        candidates = self.order(operation, preferred)
        if not candidates:
            wanted = " or ".join(DEFAULT_ORDER[operation])
            raise ConfigError(f"No provider is configured for {operation.value}: set a key for {wanted}.")
        return candidates[0]

    async def filters(self) -> list[FilterInfo]:
        """Every filter on offer; a name offered twice goes to the provider first in the filter order."""
        seen: dict[str, FilterInfo] = {}
        for provider in self.order(Operation.FILTER):
            for info in await provider.list_filters():
                seen.setdefault(info.name, info)
        return sorted(seen.values(), key=lambda f: (f.provider, f.name))


def build_providers(settings: Settings, session: aiohttp.ClientSession, *, webhooks: bool = False) -> Providers:
    """Every provider with a key (and the local one). With `webhooks`, fal and Novita are asked to call
    WEBHOOK_PUBLIC_URL when a job ends."""
    policy = HttpPolicy(timeout_s=settings.http_timeout_s, max_attempts=settings.http_max_attempts,
                        backoff_base_s=settings.http_backoff_base_s,
                        allow_private_outputs=settings.allow_private_output_urls)
    rate = settings.provider_requests_per_second or None

    def limits(max_parallel: int) -> ProviderLimits:
        return ProviderLimits(image=settings.image_limits, max_prompt_chars=settings.max_prompt_chars,
                              max_output_bytes=settings.max_output_bytes, max_parallel=max_parallel,
                              max_output_megapixels=settings.max_output_megapixels)

    # The one origin per provider that receives its key (and whose outputs may be on a private address).
    homes = {"glam": settings.glam_base_url, "fal": settings.fal_queue_url, "pixazo": settings.pixazo_base_url,
             "novita": settings.novita_base_url}

    def http(name: str, headers: dict[str, str], secret: str) -> ProviderHttp:
        return ProviderHttp(session, name, headers=headers, secrets=[secret], policy=policy,
                            requests_per_second=rate, base_url=homes.get(name))

    found: dict[str, Provider] = {}
    if settings.glam_api_key:
        key = settings.glam_api_key.get_secret_value()
        found["glam"] = GlamProvider(http("glam", {"X-API-Key": key, "Accept": "application/json"}, key),
                                     limits(settings.glam_max_parallel), base_url=settings.glam_base_url)
    if settings.fal_key:
        key = settings.fal_key.get_secret_value()
        found["fal"] = FalProvider(http("fal", {"Authorization": f"Key {key}", "Accept": "application/json"}, key),
                                   limits(settings.fal_max_parallel), queue_url=settings.fal_queue_url,
                                   webhook_url=settings.webhook_url("fal") if webhooks else None)
    if settings.pixazo_api_key:
        key = settings.pixazo_api_key.get_secret_value()
        found["pixazo"] = PixazoProvider(
            http("pixazo", {"Ocp-Apim-Subscription-Key": key, "Cache-Control": "no-cache"}, key),
            limits(settings.pixazo_max_parallel), base_url=settings.pixazo_base_url)
    if settings.novita_api_key:
        key = settings.novita_api_key.get_secret_value()
        headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
        if settings.novita_model == "seedream-5.0-lite":
            # The call answers with the images, so its timeout is the generation's, not HTTP_TIMEOUT_S.
            sync_policy = dataclasses.replace(policy, timeout_s=settings.novita_sync_timeout_s)
            found["novita"] = NovitaSeedreamProvider(
                ProviderHttp(session, "novita", headers=headers, secrets=[key], policy=sync_policy,
                             requests_per_second=rate, base_url=homes["novita"]),
                limits(settings.novita_max_parallel), base_url=settings.novita_base_url,
                watermark=settings.novita_watermark)
        else:
            found["novita"] = NovitaProvider(
                http("novita", headers, key), limits(settings.novita_max_parallel),
                base_url=settings.novita_base_url, webhook_url=settings.webhook_url("novita") if webhooks else None)
    found["local"] = LocalProvider(None, limits(settings.local_max_parallel))
    return Providers(found)
