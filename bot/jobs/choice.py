"""Which provider a job goes to: the one named, or the first in the operation's order that can take the request,
with the others kept as fallbacks; models found retired are skipped (for every process on the store)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from bot.errors import AtelierError, ConfigError, InputError, ModelRetiredError, ProviderError
from bot.jobs.core import RunnerCore
from bot.operations import Request
from bot.providers.base import Provider

log = logging.getLogger(__name__)


class Choosing(RunnerCore):
    async def _choose(self, request: Request, provider: str | None,
                      preferred: Sequence[str] | None) -> tuple[Provider, list[str]]:
        """The named provider, or the first in the operation's order that can take this request (e.g. Novita
        makes one image per job, so a request for four goes to the next); the others able to take it are kept as
        fallbacks for when the chosen one is down or rejects the key."""
        first = self.providers.choose(request.operation, provider, preferred)
        if provider is not None:
            if (until := await self._retired_until(first)) is not None:
                raise ConfigError(f"The provider {first.name} is skipped until {until:%H:%M} UTC: its model "
                                  f"{first.model} was found retired there (see the log or `atelier doctor`).")
            await first.validate(request)
            return first, []
        able: list[Provider] = []
        first_error: AtelierError | None = None
        for candidate in self.providers.order(request.operation, preferred):
            if (until := await self._retired_until(candidate)) is not None:
                first_error = first_error or ConfigError(
                    f"No provider can take this {request.operation.value}: {candidate.name}'s model "
                    f"{candidate.model} was found retired (skipped until {until:%H:%M} UTC).")
                continue
            try:
                await candidate.validate(request)
            except (InputError, ConfigError, ProviderError) as exc:
                first_error = first_error or exc
                continue
            able.append(candidate)
        if not able:
            assert first_error is not None
            raise first_error
        return able[0], [p.name for p in able[1:]]

    async def _retired_until(self, provider: Provider) -> datetime | None:
        """Until when the provider's model is marked retired in the store (by any process); None if it is not."""
        if provider.model is None:
            return None
        return await self.store.retired_until(provider.name, provider.model, now=self.clock())

    async def _note_retired(self, provider: Provider, exc: ModelRetiredError) -> None:
        """Mark the model gone for every process on this store, and tell the operator once."""
        until = self.clock() + timedelta(seconds=self.settings.retired_model_mark_s)
        if await self.store.mark_retired(provider.name, exc.model, reason=str(exc), now=self.clock(), until=until):
            log.warning("%s: the model %s is gone there (retired or removed: its endpoint answered HTTP %s). Jobs "
                        "go to the next provider in the order, and every process on this database skips %s until "
                        "%s UTC. To use %s again, set %s.", provider.name, exc.model, exc.status, provider.name,
                        f"{until:%Y-%m-%d %H:%M}", provider.name, exc.instead)
