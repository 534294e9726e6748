"""End to end: the real bot process (`python -m bot`) against the fake Discord (in this process) and the provider
fakes (in their own process), all on 127.0.0.1.

The processes are shared by every test of a pytest session (each xdist worker has its own); each test gets a fresh
channel and fresh members, so tests do not see each other's messages, jobs or quotas. The fake Discord serves from a
thread of its own, so it answers the bot between tests too, and tests may run in any event loop.

    async def test_something(e2e: E2E) -> None:
        alice = await e2e.member("alice")
        run = await alice.run_command(e2e.channel, "imagine", prompt="a fox")
        job_id = started_job((await run.reply()).content)
        result = await e2e.result(job_id, alice)

When a test fails, its report carries what the bot logged during the test and the fake Discord's last REST calls.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.e2e.harness import PROVIDERS, BotProcess, Cluster, JobsDb, ProviderFakes, WorkerProcess
from tests.fakes.discord import Channel, FakeDiscord, GuildHandle, MemberActor, Message, Perm
from tests.pg import fresh_database

# Short waits everywhere: provider jobs take about a second, so the whole set runs in well under two minutes.
BOT_SETTINGS = {
    "POLL_MIN_S": "0.1", "POLL_MAX_S": "0.3", "HTTP_BACKOFF_BASE_S": "0.05", "HTTP_TIMEOUT_S": "10",
    "JOB_DEADLINE_S": "60", "PROVIDER_REQUESTS_PER_SECOND": "0", "QUOTA_DAILY": "25", "QUOTA_CONCURRENT": "10",
    "LEASE_SECONDS": "15", "LOG_LEVEL": "INFO",
    # A new command gives up on a database locked by another program after 2 s (tests/e2e/test_locked_db.py).
    "DATABASE_BUSY_TIMEOUT_S": "2",
}
# Every new job at every provider: one poll queued, one running, then done.
DEFAULT_SCRIPT = {"queue_polls": 1, "running_polls": 1}
_names = itertools.count(1)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def providers(workdir: Path) -> Iterator[ProviderFakes]:
    fakes = ProviderFakes(workdir)
    fakes.start()
    yield fakes
    fakes.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def discord() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord()
    await fake.start()
    yield fake
    await fake.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def guild(discord: FakeDiscord) -> GuildHandle:
    return await discord.create_guild("Atelier e2e")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def bot(workdir: Path, discord: FakeDiscord, guild: GuildHandle,
              providers: ProviderFakes) -> AsyncIterator[BotProcess]:
    home = workdir / "bot"
    home.mkdir()
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "PYTHONPATH": str(Path(__file__).parents[2]),
           "DATABASE_URL": f"sqlite:///{home}/data/atelier.db", "DISCORD_GUILD_IDS": str(guild.id),
           **discord.bot_env(), **providers.env(), **BOT_SETTINGS}
    process = BotProcess(home, env)
    await process.start()
    yield process
    await process.stop()


@dataclass
class E2E:
    """One test's view of the running system: a fresh channel in the shared guild, and helpers."""

    discord: FakeDiscord
    guild: GuildHandle
    channel: Channel
    providers: ProviderFakes
    bot: BotProcess
    db: JobsDb
    log_mark: int

    async def member(self, name: str, *, manage_guild: bool = False) -> MemberActor:
        """A new member (unique per test, so quotas start at zero); with Manage Server if asked."""
        roles = [await self.guild.create_role(f"mods-{next(_names)}", int(Perm.MANAGE_GUILD))] if manage_guild else []
        return await self.guild.add_member(f"{name}-{next(_names)}", roles=roles)

    def posted(self, job_id: int, kind: str, channel: Channel | None = None) -> list[Message]:
        """The public messages Discord made for the job's posts of this kind: matched by the nonce each post was
        sent with (recorded by the bot before sending; the fake remembers what each message was posted with).
        Text proves nothing: another job's prompt may say "job #N", and another installation's job #N exists."""
        nonces = {p["nonce"] for p in self.db.posts(job_id, kind)}
        return [m for m in (channel or self.channel).live() if not m.ephemeral and m.nonce in nonces]

    def status_message(self, job_id: int) -> Message | None:
        """The job's public progress message."""
        return next(iter(self.posted(job_id, "status")), None)

    def result_message(self, job_id: int) -> Message | None:
        """The reply that delivers the job: a new public message, not the status message."""
        return next(iter(self.results_of(job_id)), None)

    def results_of(self, job_id: int, channel: Channel | None = None) -> list[Message]:
        """Every public message that delivers the job."""
        return self.posted(job_id, "result", channel)

    async def result(self, job_id: int, timeout: float = 20.0) -> Message:
        return await self.discord.wait_for(lambda: self.result_message(job_id), timeout=timeout,
                                           what=f"the result of job #{job_id}")

    async def job(self, job_id: int, *, state: str = "succeeded", timeout: float = 20.0) -> dict[str, Any]:
        """The job's row once it is in `state` (and its delivery is recorded, for finished jobs)."""
        def reached() -> dict[str, Any] | None:
            row = self.db.job(job_id)
            return row if row is not None and row["state"] == state else None
        return await self.discord.wait_for(reached, timeout=timeout, poll=0.1, what=f"job #{job_id} {state}")

    async def quiesce(self, timeout: float = 30.0) -> None:
        """Wait until no job is in flight or owed a delivery (anything left over from earlier tests)."""
        await self.discord.wait_for(lambda: self.db.unfinished() == 0, timeout=timeout, poll=0.1,
                                    what="every job finished and delivered")


@pytest_asyncio.fixture
async def e2e(discord: FakeDiscord, guild: GuildHandle, providers: ProviderFakes, bot: BotProcess,
              request: pytest.FixtureRequest) -> AsyncIterator[E2E]:
    if not bot.alive:  # an earlier test killed it and did not bring it back
        await bot.start()
    for name in PROVIDERS:
        await providers.script(name, **DEFAULT_SCRIPT)
        await providers.knobs(name, distinct_outputs=True, latency_s=0.0)
        await providers.clear_faults(name)  # an earlier test's faults not used up must not hit this one
    channel = await guild.create_channel(re.sub(r"\W+", "-", request.node.name)[:90].strip("-").lower())
    world = E2E(discord, guild, channel, providers, bot, JobsDb(bot.workdir / "data" / "atelier.db"),
                bot.log_size())
    saved = (discord.ack_deadline_s, discord.token_ttl_s, discord.nonce_window_s, discord.gateway.accept_resume)
    locale = guild.guild.locale  # the shared guild's language: a test may set another (tests/e2e/test_languages.py)
    yield world
    discord.ack_deadline_s, discord.token_ttl_s, discord.nonce_window_s, discord.gateway.accept_resume = saved
    guild.guild.locale = locale
    discord.rest.faults.clear()
    for hold in discord.rest.holds:
        hold.release()
    discord.rest.holds.clear()
    discord.rest.limits.clear()
    discord.gateway.release_connections()
    for name in PROVIDERS:
        await providers.release(name)


# --- several processes on one database (tests/e2e/test_workers.py) -------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The database every process of a multi-process test shares: an SQLite file (processes on one machine), or
    a PostgreSQL database of the test's own (processes anywhere)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/data/atelier.db"
    else:
        with fresh_database() as url:
            yield url


@dataclass
class Fleet:
    """A bot and its workers on one database, against a fake Discord of their own (the session's shared bot is
    connected to the other one: a fake Discord has one gateway session), and the shared provider fakes."""

    discord: FakeDiscord
    guild: GuildHandle
    providers: ProviderFakes
    processes: Cluster

    @property
    def bot(self) -> BotProcess:
        return self.processes.bot

    def worker(self, *, env: dict[str, str] | None = None) -> WorkerProcess:
        return self.processes.worker(env=env)

    async def member(self, name: str) -> MemberActor:
        return await self.guild.add_member(f"{name}-{next(_names)}")


@pytest_asyncio.fixture(loop_scope="session")
async def fleet(tmp_path: Path, database_url: str, providers: ProviderFakes) -> AsyncIterator[Fleet]:
    fake = FakeDiscord()
    await fake.start()
    guild = await fake.create_guild("Atelier fleet")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "PYTHONPATH": str(Path(__file__).parents[2]),
           "DATABASE_URL": database_url, "DISCORD_GUILD_IDS": str(guild.id), **fake.bot_env(), **providers.env(),
           **BOT_SETTINGS}
    for name in PROVIDERS:
        await providers.script(name, **DEFAULT_SCRIPT)
        await providers.knobs(name, distinct_outputs=True, latency_s=0.0)
        await providers.clear_faults(name)
    fleet = Fleet(fake, guild, providers, Cluster(tmp_path / "processes", env))
    try:
        yield fleet
    finally:
        await fleet.processes.stop()
        for name in PROVIDERS:
            await providers.release(name)
        await fake.stop()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    world = getattr(item, "funcargs", {}).get("e2e")
    if report.failed and isinstance(world, E2E):
        report.sections.append(("atelier bot log during the test", world.bot.log_since(world.log_mark)[-30_000:]))
        calls = [f"{c.method} {c.path} -> {c.status}" + (f" ({c.code})" if c.code else "")
                 for c in world.discord.rest.calls[-60:]]
        report.sections.append(("fake discord: last REST calls", "\n".join(calls)))
        if world.discord.rest.unknown:
            report.sections.append(("fake discord: unknown routes", "\n".join(world.discord.rest.unknown)))
    fleet = getattr(item, "funcargs", {}).get("fleet")
    if report.failed and isinstance(fleet, Fleet):
        report.sections.append(("atelier processes' logs", fleet.processes.logs()))
        calls = [f"{c.method} {c.path} -> {c.status}" for c in fleet.discord.rest.calls[-60:]]
        report.sections.append(("fake discord: last REST calls", "\n".join(calls)))
    return report
