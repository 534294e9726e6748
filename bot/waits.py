"""One hook for every wait on something outside the process (a provider's answer, a slot another job holds).

In production it simply awaits. In-process Discord tests (SimCord) swap in `env.external_wait`, which tells the
simulated Discord that the bot is busy with the outside world rather than stuck.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol, TypeVar

T = TypeVar("T")


class ExternalWait(Protocol):
    def __call__(self, awaitable: Awaitable[T], /, *, reason: str) -> Awaitable[T]: ...


async def passthrough(awaitable: Awaitable[T], /, *, reason: str) -> T:
    del reason
    return await awaitable
