"""A per-member burst cooldown per guild, set by the guild's admins (off by default)."""

from __future__ import annotations

import time


class Cooldowns:
    def __init__(self) -> None:
        self._last: dict[tuple[int, int], float] = {}

    def check(self, guild_id: int, user_id: int, cooldown_s: float) -> float:
        """0 and the start is counted, or the seconds the member must still wait."""
        now = time.monotonic()
        last = self._last.get((guild_id, user_id))
        if last is not None and now - last < cooldown_s:
            return cooldown_s - (now - last)
        self._last[(guild_id, user_id)] = now
        return 0.0
