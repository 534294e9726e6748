"""How long a store call keeps waiting for a database another program has locked (a backup, a VACUUM, a stuck
process): a running job waits until its own deadline, so a long lock never kills a paid job; anything else (a new
command, an operator's setting) waits the store's default (DATABASE_BUSY_TIMEOUT_S), then gets StoreBusyError.

The patience is a context variable: the runner sets it at the start of a job's task, and it holds for every store
call made by that task and the tasks it starts, without being passed through each call.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_until: ContextVar[float | None] = ContextVar("store_patient_until", default=None)


def be_patient_for(seconds: float) -> None:
    """For the rest of the current task (and tasks it starts), store calls keep retrying a busy database until
    `seconds` from now. Each task has its own copy of the context, so this never reaches other tasks."""
    _until.set(time.monotonic() + max(0.0, seconds))


@contextmanager
def patient_for(seconds: float) -> Iterator[None]:
    """Like be_patient_for, for the store calls inside the `with` block only (longer or shorter than usual)."""
    token = _until.set(time.monotonic() + max(0.0, seconds))
    try:
        yield
    finally:
        _until.reset(token)


def give_up_at(default_s: float) -> float:
    """The monotonic time at which a store call starting now stops waiting: the task's patience if one is set,
    else `default_s` from now."""
    until = _until.get()
    return time.monotonic() + default_s if until is None else until
