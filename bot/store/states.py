"""The job state machine: the one table of the moves a job may make, and what a move that is not in it means.

A caller names the state a job moves to; the store checks the job's current state against this table inside the
same transaction (compare-and-set). "Stay" is a move like any other: a state that may be written again while the
job is in it (progress in QUEUED/RUNNING, a new handle in RUNNING, a download resumed in FETCHING) lists itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from bot.store.models import JobState

_P, _S, _Q, _R, _F = JobState.PENDING, JobState.SUBMITTING, JobState.QUEUED, JobState.RUNNING, JobState.FETCHING
_ENDS = (JobState.FAILED, JobState.CANCELLED)

TRANSITIONS: Mapping[JobState, frozenset[JobState]] = MappingProxyType({
    # Sent (the one paid step), or ended before anything was sent.
    _P: frozenset({_S, *_ENDS}),
    # The handle is stored (QUEUED), or a synchronous call is on the wire (RUNNING); nothing was started there
    # (back to PENDING, for the next provider or a free job run again).
    _S: frozenset({_Q, _R, _P, *_ENDS}),
    _Q: frozenset({_Q, _R, _F, _P, *_ENDS}),
    # RUNNING -> SUBMITTING: a synchronous call answered with an error, so nothing is on the wire after all.
    _R: frozenset({_R, _Q, _F, _P, _S, *_ENDS}),
    _F: frozenset({_F, JobState.SUCCEEDED, _P, *_ENDS}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
})


class IllegalTransitionError(Exception):
    """A move the state machine does not allow: a bug in the caller, never a race it lost."""

    def __init__(self, job_id: int, current: JobState, to: JobState) -> None:
        super().__init__(f"job {job_id} cannot move from {current.value} to {to.value}")
        self.job_id = job_id
        self.current = current
        self.to = to


def sources(to: JobState) -> frozenset[JobState]:
    """Every state from which a job may move to `to`."""
    return frozenset(state for state, moves in TRANSITIONS.items() if to in moves)


def lost_race(current: JobState, to: JobState) -> bool:
    """A refused move that lost a race rather than broke a rule: the job ended first (a cancel, a deadline), or
    another mover already made the very same move. Such a move returns None; any other refused move raises."""
    return current.terminal or current is to
