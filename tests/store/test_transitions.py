"""The state machine's one table, checked by the store for every pair of states: a move in the table is made, a
move from an ended job (or one already made) loses its race and writes nothing, any other move is an error."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from bot.store.base import JobStore
from bot.store.models import TERMINAL_STATES, JobState
from bot.store.states import TRANSITIONS, IllegalTransitionError, lost_race, sources
from tests.store.helpers import DEFAULTS, new_job

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
PAIRS = list(itertools.product(JobState, JobState))


def test_the_table_names_every_state_and_ended_jobs_never_move() -> None:
    assert set(TRANSITIONS) == set(JobState)
    for state in TERMINAL_STATES:
        assert TRANSITIONS[state] == frozenset()
    # Every job can end from wherever it is, and every state but the first can be reached.
    for state in set(JobState) - TERMINAL_STATES:
        assert {JobState.FAILED, JobState.CANCELLED} <= TRANSITIONS[state]
    for state in set(JobState) - {JobState.PENDING}:
        assert sources(state), state
    # Only the downloads make a success.
    assert sources(JobState.SUCCEEDED) == {JobState.FETCHING}
    # Staying is explicit: only these states may be written again while a job is in them.
    assert {s for s in JobState if s in TRANSITIONS[s]} == {JobState.QUEUED, JobState.RUNNING, JobState.FETCHING}


@pytest.mark.parametrize(("current", "to"), PAIRS, ids=[f"{a.value}->{b.value}" for a, b in PAIRS])
async def test_the_store_moves_a_job_only_as_the_table_allows(store: JobStore, current: JobState,
                                                              to: JobState) -> None:
    job = await store.create_job(new_job(), defaults=DEFAULTS, now=NOW)
    placed = await store.update_job(job.id, now=NOW, state=current, progress=0.5)
    later = NOW + timedelta(seconds=1)
    if to in TRANSITIONS[current]:
        moved = await store.transition(job.id, to, now=later, progress=0.75)
        assert moved is not None and moved.state is to and moved.progress == 0.75 and moved.updated_at == later
        assert await store.get_job(job.id) == moved
    elif lost_race(current, to):
        assert await store.transition(job.id, to, now=later, progress=0.75) is None
        assert await store.get_job(job.id) == placed  # the loser wrote nothing
    else:
        with pytest.raises(IllegalTransitionError) as raised:
            await store.transition(job.id, to, now=later, progress=0.75)
        assert (raised.value.job_id, raised.value.current, raised.value.to) == (job.id, current, to)
        assert current.value in str(raised.value) and to.value in str(raised.value)
        assert await store.get_job(job.id) == placed


def test_a_lost_race_is_only_an_ended_job_or_a_move_already_made() -> None:
    refused = [(a, b) for a, b in PAIRS if b not in TRANSITIONS[a]]
    races = {(a, b) for a, b in refused if lost_race(a, b)}
    assert races == {(a, b) for a, b in refused if a in TERMINAL_STATES or a is b}
    # Some refused moves are real errors, so the error path is exercised above.
    assert len(races) < len(refused)
