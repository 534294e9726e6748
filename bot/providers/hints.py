"""A job's completion hint: set when a provider's webhook says the job ended, awaited by the poll loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bot.providers.status import Terminal


class CompletionHint:
    def __init__(self, expected: Callable[[], bool] = lambda: True) -> None:
        self._event = asyncio.Event()
        self._expected = expected
        # The outcome itself, when the webhook carried one that was verified (fal); None means "look now".
        self.status: Terminal | None = None
        self.fired = False  # a webhook came for this job at least once
        # The last call was signed by the provider (here or in another process): worth a look at once, where an
        # unsigned one, which anyone can send, waits out the poll loop's minimum gap.
        self.verified = False

    def set(self, status: Terminal | None = None, *, verified: bool = False) -> None:
        self.fired = True
        self.verified = verified or status is not None
        if status is not None:
            self.status = status
        self._event.set()

    def look_now(self) -> None:
        """Wake the loop once without claiming that a webhook came (a job resumed after a restart)."""
        self._event.set()

    def expected(self) -> bool:
        """Whether this provider's webhooks are arriving, so polling may slow to a safety net."""
        return self._expected()

    async def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True if a webhook woke us."""
        if not self._event.is_set():
            try:
                async with asyncio.timeout(seconds):
                    await self._event.wait()
            except TimeoutError:
                return False
        self._event.clear()
        return True
