"""Server budgets in the real bot (SimCord, a real SQLite file, the provider fakes on sockets): what members and
admins see of prices, caps, the 80% notice, "cheapest first" and usage in dollars."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import discord
import pytest

import bot.jobs.outbox
import cogs._delivery
from bot import codec
from bot.app import App, open_app
from bot.discord_bot import AtelierBot
from bot.jobs import RunnerConfig
from bot.operations import ImagineRequest
from bot.settings import Settings
from bot.store.models import NewJob, Origin, SpendReservation, Subject
from tests.discord.conftest import World, settle_until
from tests.discord.test_bot import PHOTO, LateWait, fal, glam, late_wait, wait_for_result
from tests.fakes.fal import FakeFal
from tests.fakes.glam import FakeGlam

__all__ = ["fal", "glam", "late_wait"]  # fixtures shared with test_bot


@pytest.fixture
async def app(tmp_path: Path, fal: FakeFal, glam: FakeGlam, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[App]:
    for var in ("PIXAZO_API_KEY", "NOVITA_API_KEY", "FAL_KEY", "GLAM_API_KEY", "PRICES", "SPEND_DAILY_USD"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(bot.jobs.outbox, "DELIVERY_SCAN_S", 30.0)
    monkeypatch.setattr(cogs._delivery, "EDIT_INTERVAL_S", 0.0)
    settings = Settings(_env_file=None, database_url=f"sqlite:///{tmp_path}/atelier.db",  # type: ignore[call-arg]
                        fal_key=fal.key, fal_queue_url=fal.base_url, glam_api_key=glam.key,
                        glam_base_url=glam.base_url, poll_min_s=0.02, poll_max_s=0.1, http_backoff_base_s=0.01,
                        quota_daily=10, quota_concurrent=5, prices='{"fal.imagine": "0.05"}')
    async with open_app(settings, deliverers={}, config=RunnerConfig(origins=frozenset({Origin.DISCORD})),
                        start=False) as built:
        yield built


@pytest.fixture
def simcord_bot(app: App, late_wait: LateWait) -> AtelierBot:
    app.runner.external_wait = late_wait
    return AtelierBot(app)


@pytest.fixture
async def atelier(world: World, late_wait: LateWait) -> World:
    late_wait.target = world.env.external_wait
    return world


@pytest.fixture
def admin(atelier: World) -> Any:
    role = atelier.guild.create_role("mods", permissions=discord.Permissions(manage_guild=True))
    return atelier.guild.add_member(atelier.env.create_user("carol"), roles=[role])


def dms(member: Any) -> list[str]:
    channel = member.user.dm_channel
    return [m.content for m in channel.history()] if channel is not None else []


async def imagine(world: World, member: Any, prompt: str) -> str:
    result = await member.slash(world.channel, "imagine", prompt=prompt)
    assert result.ephemeral and result.response is not None
    return str(result.response.content)


async def test_a_server_daily_budget_refuses_privately_and_sends_nothing(
        atelier: World, admin: Any, fal: FakeFal) -> None:
    world = atelier
    set_ = await admin.slash(world.channel, "atelier budget", daily="0.10")
    assert set_.response is not None and "$0.10 a day" in set_.response.content
    first = await imagine(world, world.alice, "one")
    assert first.startswith("Started job #1")
    assert "Estimated cost: up to $0.05" in first and "this server today $0.05 of $0.10" in first
    await wait_for_result(world, 1)
    assert (await imagine(world, world.bob, "two")).startswith("Started job #2")
    await wait_for_result(world, 2)
    public_before = len(world.channel.history())
    refused = await imagine(world, world.bob, "three")
    assert "this server's daily budget has $0.00 of $0.10 left" in refused
    assert "resets at 00:00 UTC" in refused
    assert len(world.channel.history()) == public_before  # nothing public: no status message, no job
    assert len(fal.jobs) == 2


async def test_a_member_daily_budget_is_each_members_own(atelier: World, admin: Any, fal: FakeFal) -> None:
    world = atelier
    await admin.slash(world.channel, "atelier budget", member_daily="0.05")
    assert (await imagine(world, world.alice, "one")).startswith("Started job #1")
    refused = await imagine(world, world.alice, "two")
    assert "daily budget per member has $0.00 of $0.05 left" in refused
    ok = await imagine(world, world.bob, "three")
    assert ok.startswith("Started job #2") and "you today $0.00 of $0.05" in ok
    assert len(fal.jobs) == 2


async def test_the_monthly_budget_counts_this_calendar_month_only(atelier: World, admin: Any, app: App,
                                                                  fal: FakeFal) -> None:
    world = atelier
    await admin.slash(world.channel, "atelier budget", monthly="0.10")
    scope_subject = Subject.member(world.guild.id, "earlier")
    now = app.runner.clock()
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for when in (month_start - timedelta(seconds=1), month_start):  # the last second of last month, and this one
        await app.store.create_job(
            NewJob(subject=scope_subject, origin=Origin.DISCORD, operation="imagine", provider="fal", cost=1,
                   request=codec.encode(ImagineRequest(prompt="old")), spend=SpendReservation(worst_micro=50_000)),
            defaults=app.runner.defaults, now=when)
    assert (await imagine(world, world.alice, "one")).startswith("Started job #3")
    refused = await imagine(world, world.alice, "two")
    assert "this server's monthly budget has $0.00 of $0.10 left" in refused
    assert "00:00 UTC on the 1st" in refused
    assert len(fal.jobs) == 1


async def test_whoever_set_the_budget_hears_once_when_the_server_passes_80_percent(
        atelier: World, admin: Any, fal: FakeFal) -> None:
    world = atelier
    await admin.slash(world.channel, "atelier budget", daily="0.20")
    await imagine(world, world.alice, "one")  # $0.05: 25%
    await imagine(world, world.alice, "two")  # $0.10: 50%
    await imagine(world, world.bob, "three")  # $0.15: 75%
    assert dms(admin) == []
    await imagine(world, world.bob, "four")  # $0.20: 100%
    (notice,) = dms(admin)
    assert "used $0.20 of its daily budget of $0.20 (100%)" in notice and "Atelier Test" in notice
    await imagine(world, world.alice, "five")  # refused, and no second notice
    assert len(dms(admin)) == 1
    assert dms(world.alice) == [] and dms(world.bob) == []


async def test_the_80_percent_notice_also_goes_to_the_audit_channel_once(
        atelier: World, admin: Any, fal: FakeFal) -> None:
    world = atelier
    audit = world.guild.create_text_channel("audit")
    await admin.slash(world.channel, "atelier auditlog", channel=audit)
    await admin.slash(world.channel, "atelier budget", daily="0.10")
    await imagine(world, world.alice, "one")  # $0.05: 50%
    await imagine(world, world.bob, "two")  # $0.10: 100%
    await imagine(world, world.alice, "three")  # refused, and no second notice

    def notices() -> list[str]:
        return [m.content for m in audit.history() if m.content.startswith("budget:")]

    await settle_until(world.env, lambda: bool(notices()), timeout=10, what="the budget line in the audit channel")
    await settle_until(world.env, lambda: any("refused /imagine" in m.content for m in audit.history()),
                       timeout=10, what="the audit line for the refusal that came after it")
    assert len(notices()) == 1 and "used $0.10 of its daily budget of $0.10 (100%)" in notices()[0]
    assert len(dms(admin)) == 1


async def test_cheapest_first_follows_the_prices(atelier: World, admin: Any, app: App) -> None:
    world = atelier
    answer = await admin.slash(world.channel, "atelier providers", operation="filter", order="cheapest")
    # local is free; Glam's filters have no published price, so the highest known one stands in.
    assert answer.response is not None and "cheapest provider first (today: local, glam)" in answer.response.content
    await world.alice.slash(world.channel, "filter", image=("me.png", PHOTO), name="noir")
    await wait_for_result(world, 1)
    job = await app.store.get_job(1)
    assert job is not None and job.provider == "local"


async def test_usage_shows_spend_by_day_member_command_and_provider(atelier: World, admin: Any) -> None:
    world = atelier
    await imagine(world, world.alice, "one")
    await wait_for_result(world, 1)
    await imagine(world, world.bob, "two")
    await wait_for_result(world, 2)
    usage = await admin.slash(world.channel, "atelier usage")
    assert usage.response is not None
    text = usage.response.content
    assert "**Spend this month: $0.10**" in text
    assert f"<@{world.alice.id}> $0.05 (1 img)" in text and f"<@{world.bob.id}> $0.05 (1 img)" in text
    assert "/imagine $0.10 (2 img)" in text and "fal $0.10 (2 img)" in text


async def test_a_bad_budget_changes_nothing(atelier: World, admin: Any) -> None:
    world = atelier
    await admin.slash(world.channel, "atelier budget", daily="5")
    for bad in ("-1", "lots", "0.0000001"):
        refused = await admin.slash(world.channel, "atelier budget", daily=bad)
        assert refused.response is not None and refused.response.content.startswith("Nothing changed")
    shown = await admin.slash(world.channel, "atelier budget")
    assert shown.response is not None and "$5.00 a day" in shown.response.content
