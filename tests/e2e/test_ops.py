"""The operator's view of the real bot process (`python -m bot`): /metrics, /healthz and /readyz over real HTTP,
its stderr as JSON lines, and SIGTERM with jobs in flight: a member's command during the drain is told the bot is
restarting (and charged nothing), the process exits 0 within SHUTDOWN_GRACE_S, and the next process finishes and
delivers every job exactly once.

These tests run their own bot process against a fake Discord of their own (the fake serves one gateway session at a
time, so the shared bot of tests/e2e/conftest.py cannot be connected to it too), with the shared provider fakes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import png_bytes
from tests.e2e.conftest import BOT_SETTINGS, DEFAULT_SCRIPT, E2E
from tests.e2e.harness import PROVIDER_KEY, PROVIDERS, BotProcess, JobsDb, ProviderFakes, started_job
from tests.fakes.discord import FakeDiscord, GuildHandle

pytestmark = pytest.mark.asyncio(loop_scope="session")

GRACE_S = 20.0
NOVITA_SUBMIT = "/v3/async/glm-image"
NOVITA_POLL = "/v3/async/task-result"
FAL_STATUS = "/status"
MESSAGES_ROUTE = "/channels/{id}/messages"
START_MARK = "----- bot start #"
PNG = png_bytes(170, 150, (60, 110, 160))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ops_discord() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord()
    await fake.start()
    yield fake
    await fake.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ops_guild(ops_discord: FakeDiscord) -> GuildHandle:
    return await ops_discord.create_guild("Atelier ops")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ops_bot(tmp_path_factory: pytest.TempPathFactory, ops_discord: FakeDiscord, ops_guild: GuildHandle,
                  providers: ProviderFakes) -> AsyncIterator[BotProcess]:
    home = tmp_path_factory.mktemp("ops-bot")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "PYTHONPATH": str(Path(__file__).parents[2]),
           "DATABASE_URL": f"sqlite:///{home}/data/atelier.db", "DISCORD_GUILD_IDS": str(ops_guild.id),
           **ops_discord.bot_env(), **providers.env(), **BOT_SETTINGS,
           "LOG_FORMAT": "json", "METRICS_PORT": "0", "METRICS_HOST": "127.0.0.1",
           "SHUTDOWN_GRACE_S": str(GRACE_S)}
    process = BotProcess(home, env)
    await process.start()
    yield process
    await process.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def world(ops_discord: FakeDiscord, ops_guild: GuildHandle, providers: ProviderFakes, ops_bot: BotProcess,
                request: pytest.FixtureRequest) -> AsyncIterator[E2E]:
    if not ops_bot.alive:
        await ops_bot.start()
    for name in PROVIDERS:
        await providers.script(name, **DEFAULT_SCRIPT)
        await providers.knobs(name, distinct_outputs=True, latency_s=0.0)
        await providers.clear_faults(name)
    channel = await ops_guild.create_channel(request.node.name[:60].replace("_", "-"))
    yield E2E(ops_discord, ops_guild, channel, providers, ops_bot, JobsDb(ops_bot.workdir / "data" / "atelier.db"),
              ops_bot.log_size())
    ops_discord.rest.faults.clear()
    ops_discord.rest.limits.clear()
    for name in PROVIDERS:
        await providers.release(name)


# --- reading the process ------------------------------------------------------------------------------------


def log_lines(bot: BotProcess, since: int = 0) -> list[dict[str, Any]]:
    """The process's output since `since`, each line parsed as JSON (the harness's own start markers skipped):
    a line that is not one JSON object fails the test."""
    entries = []
    for line in bot.log_since(since).splitlines():
        if not line.strip() or line.startswith(START_MARK):
            continue
        entry = json.loads(line)
        assert isinstance(entry, dict), line
        entries.append(entry)
    return entries


def ops_port(bot: BotProcess) -> int:
    """The metrics port of the running process (METRICS_PORT=0: it says in its log which port it bound)."""
    text = bot.log_since(0)
    current = text[text.rfind(START_MARK):]
    for line in reversed(current.splitlines()):
        if line.startswith("{") and "metrics and health checks on" in line:
            return int(json.loads(line)["message"].split("http://127.0.0.1:")[1].split(" ")[0])
    raise AssertionError("the bot did not log its metrics port")


async def get(bot: BotProcess, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{ops_port(bot)}{path}", timeout=aiohttp.ClientTimeout(total=10)) as resp:
        return resp.status, await resp.text()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(bot: BotProcess) -> Samples:
    status, text = await get(bot, "/metrics")
    assert status == 200
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


async def start(world: E2E, member: Any, command: str = "imagine", **options: Any) -> int:
    run = await member.run_command(world.channel, command, **options)
    return started_job((await run.reply()).content)


# --- tests ----------------------------------------------------------------------------------------------------


async def test_health_and_metrics_move_when_a_job_runs(world: E2E) -> None:
    await world.quiesce()
    status, body = await get(world.bot, "/healthz")
    assert status == 200 and json.loads(body)["status"] == "alive"
    status, body = await get(world.bot, "/readyz")
    assert (status, json.loads(body)) == (200, {"status": "ready", "checks": {
        "store": "ok", "draining": "ok", "discord": "ok"}})

    before = await scrape(world.bot)
    alice = await world.member("alice")
    prompt = "a lighthouse painted by a metrics dashboard"
    world.discord.rate_limit_next(1, route="/channels/{channel_id}/messages", retry_after=0.5)
    job_id = await start(world, alice, prompt=prompt)
    await world.result(job_id)
    await world.quiesce()  # its delivery recorded
    after = await scrape(world.bot)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("atelier_jobs_started_total", operation="imagine", provider="novita") == 1
    assert moved("atelier_jobs_finished_total", state="succeeded", operation="imagine", provider="novita") == 1
    assert moved("atelier_deliveries_total", target="discord", outcome="delivered") == 1
    # The submit and its polls, each timed.
    assert moved("atelier_provider_request_seconds_count", provider="novita", method="POST", outcome="2xx") >= 1
    assert moved("atelier_provider_request_seconds_count", provider="novita", method="GET", outcome="2xx") >= 1
    # The status post met one 429, then went through: Discord's requests by route template.
    assert moved("atelier_discord_rate_limited_total", method="POST", route=MESSAGES_ROUTE) == 1
    assert moved("atelier_discord_requests_total", method="POST", route=MESSAGES_ROUTE, status="2xx") >= 2
    assert moved("atelier_discord_requests_total", method="POST", route=MESSAGES_ROUTE, status="429") == 1
    assert moved("atelier_event_loop_lag_seconds_count") > 0
    assert value(after, "atelier_discord_shard_connected", shard="0") == 1
    assert value(after, "atelier_draining") == 0
    assert total(after, "process_resident_memory_bytes") > 0

    # Bounded labels: no id of the member, the guild, the channel or the job, and no word of the prompt.
    label_values = {v for _, labels in after for _, v in labels}
    for secret in (str(alice.id), str(world.guild.id), str(world.channel.id), "lighthouse"):
        assert not any(secret in v for v in label_values), secret
    assert not any(v.isdigit() and len(v) > 3 for v in label_values)


async def test_json_logs_name_the_job_and_never_a_key(world: E2E) -> None:
    await world.quiesce()
    bob = await world.member("bob")
    # A provider that echoes the key in its failure reason: the key must not reach the log either.
    await world.providers.script("novita", queue_polls=1, running_polls=1, outcome="fail",
                                 fail_reason=f"Authorization: Bearer {PROVIDER_KEY} over the limit")
    failed = await start(world, bob, prompt="a failing harbour")
    await world.job(failed, state="failed")
    await world.providers.script("novita", **DEFAULT_SCRIPT)
    ok = await start(world, bob, prompt="a quiet harbour")
    await world.result(ok)
    await world.quiesce()

    entries = log_lines(world.bot)  # every line since the process started, each one JSON object
    assert entries and all({"ts", "level", "logger", "message"} <= set(e) for e in entries)
    about = [e for e in entries if "job_id" in e]
    for entry in about:
        assert isinstance(entry["job_id"], int) and isinstance(entry["provider"], str), entry
        assert entry["guild"] == str(world.guild.id), entry
    for job_id in (failed, ok):
        mine = [e for e in about if e["job_id"] == job_id]
        assert mine, f"no log line names job {job_id}"
        assert all(e["provider"] == "novita" for e in mine)
    text = world.bot.log_since(0)
    assert PROVIDER_KEY not in text
    assert world.discord.token not in text


async def test_sigterm_drains_and_the_next_process_delivers_every_job_once(world: E2E) -> None:
    await world.quiesce()
    erin, alice, bob, carol, dave = [await world.member(n) for n in ("erin", "alice", "bob", "carol", "dave")]
    old = await start(world, erin, prompt="an earlier result")
    old_result = await world.result(old)
    novita_before = len((await world.providers.stats("novita"))["jobs"])
    fal_before = len((await world.providers.stats("fal"))["jobs"])

    # Running at fal, its polls held: a job in flight that is not on the wire.
    await world.providers.script("fal", queue_polls=0, running_polls=3)
    running = await start(world, bob, "edit", image=("room.png", PNG), prompt="running through a restart")
    await world.job(running, state="running")
    await world.providers.hold("fal", FAL_STATUS)
    # A submit on the wire: Novita holds it unanswered, so the drain has something to wait for.
    await world.providers.hold("novita", NOVITA_SUBMIT)
    sending = await start(world, alice, prompt="submitted while stopping")
    await world.job(sending, state="submitting")
    # A command under way when SIGTERM comes: recorded, its public status post held at Discord.
    posting = world.discord.hold_next("POST", path=f"/channels/{world.channel.id}/messages")
    under_way = await dave.run_command(world.channel, "imagine", prompt="asked just before the restart")
    await world.discord.wait_for(lambda: posting.call is not None, what="the status post to reach Discord")

    mark = world.bot.log_size()
    assert world.bot.proc is not None
    world.bot.proc.send_signal(signal.SIGTERM)
    began = time.monotonic()
    await world.discord.wait_for(lambda: "draining (SIGTERM)" in world.bot.log_since(mark), poll=0.05,
                                 what="the bot to begin draining")

    # During the drain: not ready, a command and a button are told privately that the bot is restarting.
    status, body = await get(world.bot, "/readyz")
    assert status == 503 and json.loads(body)["checks"]["draining"] != "ok"
    refused = await (await carol.run_command(world.channel, "imagine", prompt="too late")).reply()
    assert refused.ephemeral and "restarting" in refused.content, refused.content
    click = await carol.click(old_result, "Retry")
    assert await click.acked() < 3.0
    clicked = await click.reply()
    assert clicked.ephemeral and "restarting" in clicked.content, clicked.content
    assert world.db.jobs_of(carol.id) == [] and world.db.images_charged(carol.id) == 0
    during = await scrape(world.bot)
    assert value(during, "atelier_draining") == 1
    assert value(during, "atelier_refusals_total", reason="draining") == 2
    # In flight here: bob's job at fal and alice's submit on the wire (dave's job starts once its post is shown).
    assert total(during, "atelier_jobs_in_flight", provider="fal", operation="edit") == 1
    assert value(during, "atelier_jobs_in_flight", state="submitting", provider="novita", operation="imagine") == 1
    assert world.bot.alive, "the bot left before the submit on the wire stored its handle"

    # The submit is answered and its handle stored; the drain still waits for the command under way.
    await world.providers.release("novita")
    await world.providers.hold("novita", NOVITA_POLL)
    await world.discord.wait_for(lambda: (world.db.job(sending) or {}).get("handle"), poll=0.05,
                                 what="the drained submit's handle")
    await asyncio.sleep(0.5)
    assert world.bot.alive, "the bot left before the command under way was answered"
    # Answered: its job was recorded before the drain, so it stands (and waits, unsent, for the next process).
    posting.release()
    late = started_job((await under_way.reply()).content)

    # Nothing is under way any more: the leases go back and the process exits 0 within the grace.
    code = await asyncio.to_thread(world.bot.proc.wait, GRACE_S)
    elapsed = time.monotonic() - began
    assert code == 0, world.bot.log_since(mark)[-5000:]
    assert elapsed < GRACE_S
    stored = world.db.job(sending)
    assert stored is not None and stored["handle"] and stored["state"] != "submitting", stored
    assert (world.db.job(late) or {}).get("state") == "pending"  # never sent during the drain
    for job_id in (sending, running, late):
        assert (world.db.job(job_id) or {}).get("lease_owner") is None, f"job #{job_id} still leased"
    assert not [e for e in log_lines(world.bot, mark) if e["level"] in ("ERROR", "CRITICAL")]
    await world.bot.kill()  # reaps the exited process and its log reader

    # The next process follows both jobs from their stored handles and delivers each exactly once.
    await world.providers.release("novita")
    await world.providers.release("fal")
    await world.bot.start()
    for job_id in (sending, running, late):
        await world.result(job_id, timeout=40)
    await world.quiesce(timeout=40)
    for job_id in (sending, running, late):
        assert len(world.results_of(job_id)) == 1, f"job #{job_id} delivered more than once"
        assert (await world.job(job_id))["state"] == "succeeded"
    # Nothing was sent twice: one submit each, the drained one included.
    assert len((await world.providers.stats("novita"))["jobs"]) == novita_before + 2
    assert len((await world.providers.stats("fal"))["jobs"]) == fal_before + 1

