"""A per-provider gate: at most N jobs at the provider at once; waiting jobs are served round-robin across users,
so one user's burst does not starve the others, and each waiting job knows its place in line."""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from dataclasses import dataclass, field


@dataclass
class _Waiter:
    job_id: int
    future: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class FairGate:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.active = 0
        # user -> that user's waiting jobs in arrival order; the dict's order is the round-robin rotation.
        self._queues: OrderedDict[str, deque[_Waiter]] = OrderedDict()

    async def acquire(self, user: str, job_id: int) -> None:
        if self.active < self.capacity and not self._queues:
            self.active += 1
            return
        waiter = _Waiter(job_id)
        self._queues.setdefault(user, deque()).append(waiter)
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self.release()  # the slot was handed to us just as we were cancelled: pass it on
            else:
                self._remove(user, waiter)
            raise

    def occupy(self) -> None:
        """Count a job that is already at the provider (resumed after a restart) without making it wait."""
        self.active += 1

    def release(self) -> None:
        while self._queues:
            user, queue = next(iter(self._queues.items()))
            waiter = queue.popleft()
            # Move this user to the back of the rotation (or drop them if they have nobody left waiting).
            del self._queues[user]
            if queue:
                self._queues[user] = queue
            if not waiter.future.done():
                waiter.future.set_result(None)
                return  # the slot passes straight to the waiter: active stays the same
        self.active = max(0, self.active - 1)

    def _remove(self, user: str, waiter: _Waiter) -> None:
        queue = self._queues.get(user)
        if queue and waiter in queue:
            queue.remove(waiter)
            if not queue:
                del self._queues[user]

    def order(self) -> list[int]:
        """Waiting job ids in the order they will be served."""
        queues = [list(q) for q in self._queues.values()]
        result: list[int] = []
        depth = 0
        while any(depth < len(q) for q in queues):
            result.extend(q[depth].job_id for q in queues if depth < len(q))
            depth += 1
        return result

    def position(self, job_id: int) -> int | None:
        """1-based place in line, or None when the job is not waiting."""
        try:
            return self.order().index(job_id) + 1
        except ValueError:
            return None

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._queues.values())
