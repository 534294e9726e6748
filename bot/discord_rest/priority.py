"""What a REST request is for, set by its caller and read where the request waits for the budget.

A contextvar, so that everything a delivery does (fetching the channel, searching for an earlier post, posting)
carries the delivery's priority without passing it down; tasks started inside inherit it, so background work sets
its own (the audit log, the progress editor).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum


class Priority(IntEnum):
    """Lower is served first; within one level, first come first served."""

    RESULT = 0  # result posts and DMs, and what they need (the channel, the upload limit, the lookup)
    STATUS = 1  # status messages: the first post, and the final edit
    # Everything nobody labelled: a command's channel read, start-up (login, command sync). Usually a member is
    # waiting on it right now, so above the background work, below what finishes a job.
    DEFAULT = 2
    AUDIT = 3  # audit-channel lines (bot.discord_audit): nobody waits for them
    PROGRESS = 4  # progress edits: the next edit says the same and more
    EXTRA = 5  # the pre-added reactions on a result: a convenience, skipped when the budget is short


_PRIORITY: contextvars.ContextVar[Priority] = contextvars.ContextVar("discord_rest_priority",
                                                                      default=Priority.DEFAULT)


def current_priority() -> Priority:
    return _PRIORITY.get()


@contextmanager
def rest_priority(priority: Priority) -> Iterator[None]:
    """Bot-token REST requests made inside this block wait for the budget at `priority`."""
    token = _PRIORITY.set(priority)
    try:
        yield
    finally:
        _PRIORITY.reset(token)
