"""The runner's metrics move as a member would see jobs go: one started, one refused by the quota, one refused
while draining (and nothing recorded for it), one finished; the in-flight gauge shows a job at its provider."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bot.app import open_app
from bot.errors import QuotaError, RestartingError
from bot.jobs import RunnerConfig
from bot.operations import ImagineRequest
from bot.ops.metrics import REGISTRY
from bot.store.models import Origin, Subject
from tests.fakes.fal import FakeFal
from tests.runner.conftest import RecordingDelivery, finished, settings_for

ALICE = Subject.member(1, "alice")


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_jobs_refusals_and_ends_are_counted(tmp_path: Path, fal: FakeFal,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("GLAM_API_KEY", "PIXAZO_API_KEY", "NOVITA_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    fal.hold_paths = ["/status"]  # submitted, then its first poll hangs until released: queued as far as we know
    settings = settings_for(tmp_path, fal, quota_daily=1)
    config = RunnerConfig(origins=frozenset({Origin.DISCORD}), adopt=True)

    def started() -> float:
        return sample("atelier_jobs_started_total", operation="imagine", provider="fal")

    def ended() -> float:
        return sample("atelier_jobs_finished_total", state="succeeded", operation="imagine", provider="fal")

    # The registry is the process's: other tests in this process may have moved it already.
    before = {"started": started(), "ended": ended(), "daily": sample("atelier_refusals_total", reason="daily"),
              "draining": sample("atelier_refusals_total", reason="draining")}
    async with open_app(settings, deliverers={"discord": RecordingDelivery()}, config=config) as app:
        job = await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="a fox"))
        assert started() == before["started"] + 1
        deadline = time.monotonic() + 10
        while sample("atelier_jobs_in_flight", state="queued", operation="imagine", provider="fal") != 1:
            assert time.monotonic() < deadline, "the submitted job never showed in flight"
            await asyncio.sleep(0.02)

        with pytest.raises(QuotaError):
            await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="one too many"))
        assert sample("atelier_refusals_total", reason="daily") == before["daily"] + 1

        app.runner.draining = True
        with pytest.raises(RestartingError, match="restarting"):
            await app.runner.create(Subject.member(1, "bob"), Origin.DISCORD, ImagineRequest(prompt="late"))
        app.runner.draining = False
        assert sample("atelier_refusals_total", reason="draining") == before["draining"] + 1
        assert [j.id for j in await app.store.list_jobs(None)] == [job.id]  # nothing recorded for either

        fal.release.set()
        await finished(app, job.id)
        assert ended() == before["ended"] + 1
        assert sample("atelier_jobs_in_flight", state="queued", operation="imagine", provider="fal") == 0
