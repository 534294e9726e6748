"""The fakes' job scripts: a seeded duration range gives every client the same durations, in order."""

from __future__ import annotations

from tests.fakes.base import JobScript
from tests.fakes.fal import FakeFal


def durations(server: FakeFal, n: int) -> list[float | None]:
    return [server.new_job("imagine", {"prompt": str(i)}).script.duration_s for i in range(n)]


async def test_a_fresh_seeded_script_repeats_the_durations() -> None:
    fake = FakeFal()
    fake.script = JobScript(duration_range=(2.0, 20.0), seed=7)
    first = durations(fake, 50)
    fake.script = JobScript(duration_range=(2.0, 20.0), seed=7)
    assert durations(fake, 50) == first
    assert all(d is not None and 2.0 <= d <= 20.0 for d in first)
    fake.script = JobScript(duration_range=(2.0, 20.0), seed=8)
    assert durations(fake, 50) != first


async def test_without_a_seed_durations_still_vary() -> None:
    fake = FakeFal()
    fake.script = JobScript(duration_range=(2.0, 20.0))
    assert len(set(durations(fake, 20))) == 20
