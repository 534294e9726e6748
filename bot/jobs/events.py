"""What the runner tells its listeners about a job (the Discord layer's status messages, the CLI's progress)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from bot.providers.status import JobStatus
from bot.store.models import Job


@dataclass(frozen=True, slots=True)
class JobEvent:
    kind: Literal["waiting", "progress", "finished"]
    job: Job
    status: JobStatus | None = None
    place_in_line: int | None = None


Listener = Callable[[JobEvent], Awaitable[None]]
