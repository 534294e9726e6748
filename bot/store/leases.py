"""Leases: one process works a job at a time. Whether a lease may be taken over is the same rule in every store."""

from __future__ import annotations

import os
import sys
from datetime import datetime

from bot.store.rows import Row, dt


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this id exists on this machine. When we cannot tell, say yes: the lease's
    expiry frees it later, whereas taking a live process's job would run it twice."""
    if pid is None or pid <= 0 or sys.platform == "win32":
        # pid <= 0 would signal process groups; on Windows, signal 0 is CTRL_C_EVENT and would interrupt it.
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def lease_takeable(row: Row, *, claimer: str | None, host: str, now: datetime) -> bool:
    owner = row["lease_owner"]
    if owner is None or owner == claimer:
        return True
    expires = row["lease_expires_at"]
    if expires is None or dt(expires) < now:
        return True
    # A live lease from this host whose process is gone (crash, restart in the same container) need not
    # wait out its expiry. Another host's processes cannot be checked, so their leases must lapse.
    return bool(row["lease_host"] == host and not pid_alive(row["lease_pid"]))
