"""A job's money reservation inside the real runner (real SQLite file, provider fakes over sockets): the worst case
is reserved when the job is recorded and settles to what was delivered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import pytest

from bot.app import App, open_app
from bot.jobs import RunnerConfig
from bot.money.caps import GuildBudget
from bot.money.prices import Price
from bot.operations import ImagineRequest, Size
from bot.store.models import Origin, Subject
from tests.fakes.fal import FakeFal
from tests.fakes.novita import FakeNovita
from tests.runner.conftest import RecordingDelivery, finished, settings_for

ALICE = Subject.member(1, "alice")
SEEDREAM = "/v3/seedream-5.0-lite"
# fal may take a job Novita cannot: the reservation is for the dearer of the two, so both are priced alike here.
FOUR_CENTS = '{"novita:seedream-5.0-lite.imagine": "0.04", "fal.imagine": "0.04"}'


@pytest.fixture
async def novita() -> AsyncIterator[FakeNovita]:
    server = FakeNovita(key="nv-money-key")
    await server.start()
    yield server
    await server.stop()


@asynccontextmanager
async def app_for(tmp_path: Path, fal: FakeFal, novita: FakeNovita, **overrides: object) -> AsyncIterator[App]:
    settings = settings_for(tmp_path, fal, novita_api_key=novita.key, novita_base_url=novita.base_url,
                            spend_daily_usd=Decimal("10"), **overrides)
    async with open_app(settings, deliverers={"discord": RecordingDelivery()},
                        config=RunnerConfig(origins=frozenset({Origin.DISCORD}))) as app:
        await app.store.set_guild_setting(1, "budget", GuildBudget(daily=5_000_000, member_daily=1_000_000,
                                                                   monthly=50_000_000).to_setting())
        yield app


async def spent(app: App) -> dict[str, int]:
    return {cap.name: cap.spent for cap in await app.runner.spend_caps(ALICE)}


async def test_fewer_images_than_asked_settle_to_what_came_back(tmp_path: Path, fal: FakeFal,
                                                                novita: FakeNovita) -> None:
    novita.seedream_counts = [2]
    novita.hold_paths = [SEEDREAM]
    async with app_for(tmp_path, fal, novita, prices=FOUR_CENTS) as app:
        job = await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="foxes", count=4))
        # While it runs, all four images are reserved, for every cap.
        assert await spent(app) == {"install_daily": 160_000, "guild_daily": 160_000, "guild_monthly": 160_000,
                                    "member_daily": 160_000}
        novita.release.set()
        done = await finished(app, job.id)
        assert len(done.outputs) == 2
        assert await spent(app) == {"install_daily": 80_000, "guild_daily": 80_000, "guild_monthly": 80_000,
                                    "member_daily": 80_000}
        (row,) = await app.store.spend_report("guild:1", since=done.created_at.replace(hour=0),
                                              until=done.created_at.replace(hour=23))
    assert (row.jobs, row.images, row.micro, row.provider) == (1, 2, 80_000, "novita")


async def test_an_interrupted_call_keeps_its_worst_case_for_the_install_and_guild_but_not_the_member(
        tmp_path: Path, fal: FakeFal, novita: FakeNovita) -> None:
    novita.call_s = 3.0
    async with app_for(tmp_path, fal, novita, prices=FOUR_CENTS, novita_sync_timeout_s=0.4,
                       http_timeout_s=30) as app:
        job = await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="a fox"))
        done = await finished(app, job.id)
        assert done.error_code == "interrupted" and done.charged is None and done.refunded
        # Novita may have billed the call: the owner's money counts it; the member gets theirs back.
        assert await spent(app) == {"install_daily": 40_000, "guild_daily": 40_000, "guild_monthly": 40_000,
                                    "member_daily": 0}


async def test_a_per_megapixel_price_settles_on_the_size_delivered(tmp_path: Path, fal: FakeFal,
                                                                   novita: FakeNovita) -> None:
    async with app_for(tmp_path, fal, novita, prices='{"fal.imagine": "0.15/MP"}') as app:
        job = await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="a fox", size=Size(width=2048,
                                                                                                    height=2048)),
                                      provider="fal")
        reserved = await spent(app)
        done = await finished(app, job.id)
        (image,) = done.outputs
        settled = await spent(app)
    assert reserved["install_daily"] == 629_146  # 0.15 x 4.194304 MP, rounded up to a micro-dollar
    assert settled["install_daily"] == Price(Decimal("0.15"), per_mp=True).image_micro(image.width * image.height)
    assert settled["install_daily"] < reserved["install_daily"]


async def test_a_glam_filter_costs_its_catalogue_credits_at_the_operators_rate(tmp_path: Path, fal: FakeFal) -> None:
    from bot.operations import FilterRequest
    from tests.conftest import image_input
    from tests.fakes.glam import FakeGlam

    glam = FakeGlam(key="glam-money-key")
    glam.filter_credits = {"real_sunset": 3}
    await glam.start()
    try:
        settings = settings_for(tmp_path, fal, glam_api_key=glam.key, glam_base_url=glam.base_url,
                                glam_usd_per_credit=Decimal("0.015"), spend_daily_usd=Decimal("1"))
        async with open_app(settings, deliverers={"discord": RecordingDelivery()},
                            config=RunnerConfig(origins=frozenset({Origin.DISCORD}))) as app:
            job = await app.runner.create(ALICE, Origin.DISCORD, FilterRequest(image=image_input(),
                                                                               name="real_sunset"))
            assert job.provider == "glam"
            assert await spent(app) == {"install_daily": 45_000}  # 3 credits x $0.015
            await finished(app, job.id)
            assert await spent(app) == {"install_daily": 45_000}
    finally:
        await glam.stop()


async def test_a_result_never_delivered_costs_nothing_even_after_it_was_settled(
        tmp_path: Path, fal: FakeFal, monkeypatch: pytest.MonkeyPatch) -> None:
    import bot.jobs.outbox

    monkeypatch.setattr(bot.jobs.outbox, "DELIVERY_SCAN_S", 0.05)
    monkeypatch.setattr(bot.jobs.outbox, "DELIVERY_BACKOFF_S", (0.05,))
    settings = settings_for(tmp_path, fal, delivery_max_attempts=2, spend_daily_usd=Decimal("1"),
                            prices='{"fal.imagine": "0.05"}')
    config = RunnerConfig(origins=frozenset({Origin.DISCORD}), adopt=True)
    async with open_app(settings, deliverers={"discord": RecordingDelivery(fail_times=1_000)},
                        config=config) as app:
        job = await app.runner.create(ALICE, Origin.DISCORD, ImagineRequest(prompt="x", count=2), provider="fal")
        assert await spent(app) == {"install_daily": 100_000}
        deadline = time.monotonic() + 10
        while not (latest := await app.store.get_job(job.id)) or not latest.undeliverable:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert latest.state.value == "succeeded" and len(latest.outputs) == 2
        # Given up, then settled: the refund follows the mark, a moment later.
        while await spent(app) != {"install_daily": 0}:
            assert time.monotonic() < deadline, await spent(app)
            await asyncio.sleep(0.05)
