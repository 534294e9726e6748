"""The refund rule: a finished job that delivered no image gives its cost back, whatever it cost us."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.store import Job, JobState, Origin, StoredOutput, refund_due
from tests.store.helpers import ALICE, NOW

IMAGE = StoredOutput(sha256="ab" * 32, mime="image/png", width=512, height=512, path="outputs/ab.png")
BASE = Job(id=1, subject=ALICE, origin=Origin.DISCORD, operation="imagine", request={}, provider="fal",
           state=JobState.PENDING, cost=1, created_at=NOW, updated_at=NOW, deadline_at=NOW)

S = JobState
TABLE = [
    # state         outputs    charged  refund?
    (S.FAILED,      (),        None,    True),
    (S.FAILED,      (),        True,    True),   # the provider billed us; the member still got nothing
    (S.FAILED,      (),        False,   True),
    (S.CANCELLED,   (),        None,    True),
    (S.CANCELLED,   (),        True,    True),
    (S.CANCELLED,   (),        False,   True),
    (S.SUCCEEDED,   (),        True,    True),   # "succeeded" with every image filtered out
    (S.SUCCEEDED,   (IMAGE,),  True,    False),
    (S.SUCCEEDED,   (IMAGE,),  None,    False),
    (S.CANCELLED,   (IMAGE,),  True,    False),  # cancelled after the images arrived: they were delivered
    (S.FAILED,      (IMAGE,),  None,    False),
    # not finished: nothing is decided yet
    (S.PENDING,     (),        None,    False),
    (S.SUBMITTING,  (),        None,    False),
    (S.QUEUED,      (),        True,    False),
    (S.RUNNING,     (),        None,    False),
    (S.FETCHING,    (),        True,    False),
]


@pytest.mark.parametrize(("state", "outputs", "charged", "expected"), TABLE)
def test_refund_due(state: JobState, outputs: tuple[StoredOutput, ...], charged: bool | None,
                    expected: bool) -> None:
    assert refund_due(replace(BASE, state=state, outputs=outputs, charged=charged)) is expected


def test_every_state_is_in_the_table() -> None:
    assert {row[0] for row in TABLE} == set(JobState)
