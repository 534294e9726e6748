"""Waiting out a busy SQLite database: every public call of the store is retried with backoff while SQLite says
the database is locked, for as long as the calling task may wait (bot.store.patience), then fails with
StoreBusyError. Re-running a call is safe: a busy error means its transaction never began (BEGIN IMMEDIATE takes
the lock first) or its single statement did not apply."""

from __future__ import annotations

import functools
import inspect
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Concatenate, ParamSpec, Protocol, TypeVar

import tenacity

from bot.errors import StoreBusyError
from bot.store import patience

BUSY_BACKOFF_S = (0.02, 1.0)  # first and longest pause between attempts (exponential, with jitter)


class _Patient(Protocol):
    busy_timeout_s: float


P = ParamSpec("P")
T = TypeVar("T")
S = TypeVar("S", bound=_Patient)


def is_busy(exc: BaseException) -> bool:
    # Extended codes (SQLITE_BUSY_SNAPSHOT, SQLITE_BUSY_RECOVERY, ...) share the primary code's low byte.
    return isinstance(exc, sqlite3.OperationalError) and (exc.sqlite_errorcode & 0xFF) == sqlite3.SQLITE_BUSY


def busy_error(waited_s: float) -> StoreBusyError:
    return StoreBusyError(f"The database is busy: another program has kept it locked for {waited_s:.0f} s (a backup "
                          "or a stuck process?). Nothing was changed; please try again in a minute.")


async def patiently(call: Callable[[], Awaitable[T]], *, default_s: float) -> T:
    """Run `call` again while the database is busy, until the calling task's patience runs out."""
    started = time.monotonic()
    until = patience.give_up_at(default_s)
    try:  # the usual case, without setting up a retry policy for every call
        return await call()
    except sqlite3.OperationalError as exc:
        if not is_busy(exc):
            raise
    retrying = tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception(is_busy),
        wait=tenacity.wait_exponential_jitter(multiplier=BUSY_BACKOFF_S[0], max=BUSY_BACKOFF_S[1],
                                              jitter=BUSY_BACKOFF_S[0]),
        stop=lambda state: time.monotonic() >= until, reraise=True)
    try:
        async for attempt in retrying:
            with attempt:
                return await call()
    except sqlite3.OperationalError as exc:
        if is_busy(exc):
            raise busy_error(time.monotonic() - started) from exc
        raise
    raise AssertionError("tenacity stops by raising")  # pragma: no cover


def _patient(method: Callable[Concatenate[S, P], Awaitable[T]]) -> Callable[Concatenate[S, P], Awaitable[T]]:
    @functools.wraps(method)
    async def call(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await patiently(lambda: method(self, *args, **kwargs), default_s=self.busy_timeout_s)
    return call


# Not retried as a whole: opening has its own waits, closing must not wait on other programs.
_NOT_PATIENT = frozenset({"open", "close"})


def patient_methods(cls: type[S]) -> type[S]:
    """Every public coroutine method of the store waits out a busy database (see the module docstring),
    including methods added later, so no call on a job's path can be forgotten."""
    for name, value in list(vars(cls).items()):
        if not name.startswith("_") and name not in _NOT_PATIENT and inspect.iscoroutinefunction(value):
            setattr(cls, name, _patient(value))
    return cls
