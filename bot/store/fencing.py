"""Fenced writes: what a job's worker writes lands only while its process still holds the job's lease.

A process can stall (a long GC pause, SIGSTOP, a VM frozen by its host) past its lease; another process then takes
the job over. When the first one wakes up it must not write over the second: every write a job's worker makes
carries the owner it believes it is (`AND lease_owner = me` in a shared store), and a write that finds the job
held by someone else raises LeaseLostError instead of landing. The owner travels with the job's task (a context
variable), so no call site has to pass it along.
"""

from __future__ import annotations

from contextvars import ContextVar

_HOLDER: ContextVar[str | None] = ContextVar("atelier_lease_holder", default=None)


class LeaseLostError(Exception):
    """Another process holds this job now: this one stops working it, and writes nothing more about it.
    Not an AtelierError: nothing a member should read."""

    def __init__(self, job_id: int, owner: str) -> None:
        super().__init__(f"job {job_id} is no longer leased to {owner}")
        self.job_id = job_id
        self.owner = owner


def work_as(owner: str) -> None:
    """Mark the running task (and the tasks it starts) as the worker of a job leased to `owner`."""
    _HOLDER.set(owner)


def holder() -> str | None:
    """The lease owner whose fenced writes this task makes, or None for unfenced writes (a member's cancel, an
    operator's command, housekeeping)."""
    return _HOLDER.get()
