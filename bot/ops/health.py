"""Readiness: named checks each process kind registers (the store everywhere; the gateway's shards in a bot
process; not draining). /healthz needs none of them: a process that answers HTTP is alive."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

# A check returns None when ready, else a short reason (for the operator reading /readyz; never a secret).
Check = Callable[[], Awaitable[str | None]]
CHECK_TIMEOUT_S = 2.0


class Health:
    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}

    def add_check(self, name: str, check: Check) -> None:
        self._checks[name] = check

    async def readiness(self) -> dict[str, str]:
        """Each check's verdict, "ok" or why not; all run at once, each within CHECK_TIMEOUT_S."""
        names = list(self._checks)
        verdicts = await asyncio.gather(*(self._run(name) for name in names))
        return dict(zip(names, verdicts, strict=True))

    async def _run(self, name: str) -> str:
        try:
            reason = await asyncio.wait_for(self._checks[name](), timeout=CHECK_TIMEOUT_S)
        except TimeoutError:
            return f"no answer within {CHECK_TIMEOUT_S:.0f} s"
        except Exception as exc:
            # The type only: an exception's text may carry a connection string.
            log.warning("readiness check %s failed: %s", name, type(exc).__name__)
            return f"failed ({type(exc).__name__})"
        return "ok" if reason is None else reason
