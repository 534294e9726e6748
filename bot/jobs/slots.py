"""Provider slots shared by every process on one store (PostgreSQL): `*_MAX_PARALLEL` is the providers' cap per
key, not per process. The store keeps the slots (a job holds one by being at the provider) and the line (round
robin across members, kept across restarts); this is the in-process face of one provider's slots: it wakes this
process's waiting jobs when another process frees a slot, and remembers each one's last known place in line."""

from __future__ import annotations

import asyncio
import contextlib


class SharedGate:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._places: dict[int, int] = {}
        self._changed: asyncio.Future[None] | None = None

    # The in-process gate's interface (bot.fairqueue.FairGate): leaving the provider's states gives a shared slot
    # back, in the same transaction, so there is nothing to count here.
    def release(self) -> None:
        pass

    def occupy(self) -> None:
        pass

    def position(self, job_id: int) -> int | None:
        return self._places.get(job_id)

    @property
    def waiting(self) -> int:
        return len(self._places)

    def wait_in_line(self, job_id: int, place: int) -> None:
        self._places[job_id] = place

    def left_line(self, job_id: int) -> None:
        self._places.pop(job_id, None)

    def slot_freed(self) -> None:
        """Another process (or this one) moved a job off this provider: every waiting job asks again."""
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        self._changed = None

    async def changed(self, within_s: float) -> None:
        """Until a slot may have come free, or `within_s` seconds (the fallback when a notification is lost)."""
        if self._changed is None or self._changed.done():
            self._changed = asyncio.get_running_loop().create_future()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._changed), within_s)
