"""Benchmark: the Discord REST budget (DISCORD_REST_PER_SECOND) with many jobs in flight across processes.

    uv run python -m bench.discord_rest [--jobs 2000] [--workers 1] [--per-second 40] [--json out.json]

A bot and --workers `atelier worker` processes (the real ones, tests/e2e/harness.py) on a fresh PostgreSQL database,
against the fake Discord (in this process, its global limit at Discord's 50 a second) and the provider fakes (in
their own process). Members start --jobs /imagine at once; every job stays a few seconds at the provider, its status
message edited as it goes. Reported: global 429s (must be 0), peak and mean bot-token requests a second at Discord
(must stay under the budget), results posted, REST requests per delivered job, the result delay (the job recorded
finished -> its result message at Discord) p50/p99, and, from each process's metrics, how long result posts waited
for the budget.

Then a second, light run (--light-jobs started --light-rate a second): result posts alone fit the budget, and the
budget adds nothing to them. Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

from bench.common import LoopLag, emit, free_port, machine, pct
from tests.e2e.conftest import BOT_SETTINGS
from tests.e2e.harness import PROVIDERS, Cluster, ProviderFakes, started_job
from tests.fakes.discord import FakeDiscord
from tests.pg import fresh_database

CAPTION = re.compile(r"is ready · job #(\d+)")
CHANNELS = 20
JOBS_PER_MEMBER = 10
STARTING_AT_ONCE = 40  # commands in the air at once while the jobs are started


def settings(per_second: float) -> dict[str, str]:
    return {**BOT_SETTINGS, "DISCORD_REST_PER_SECOND": str(per_second), "LOG_LEVEL": "INFO",
            # A few seconds at the provider, polled gently: thousands of jobs must not swamp two cores with polls.
            "POLL_MIN_S": "1.0", "POLL_MAX_S": "2.0", "JOB_DEADLINE_S": "1800", "LEASE_SECONDS": "30",
            "QUOTA_DAILY": "100000", "QUOTA_CONCURRENT": str(JOBS_PER_MEMBER),
            **{f"{name.upper()}_MAX_PARALLEL": "5000" for name in PROVIDERS}}


async def wait_results(discord: FakeDiscord, jobs: int, timeout: float) -> None:
    """Until `jobs` results are posted, counted from the fake's call log as it grows: the fake serves from a thread
    of this process, and a scan of every channel's messages each second would hold up its answers (and bunch the
    arrivals it stamps)."""
    seen, posted = 0, set()
    deadline = time.monotonic() + timeout
    while len(posted) < jobs:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(posted)} of {jobs} results posted after {timeout:g} s")
        calls = discord.rest.calls
        for call in calls[seen:len(calls)]:
            if call.status == 0:
                break  # still being answered: looked at again next time
            seen += 1
            content = call.body.get("content") if call.method == "POST" and isinstance(call.body, dict) else None
            match = CAPTION.search(content or "")
            if match and call.status == 200:
                posted.add(int(match[1]))
        await asyncio.sleep(1.0)


async def scrape(port: int) -> dict[str, float]:
    """The budget's counters from one process's /metrics: waits and wait seconds by priority."""
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{port}/metrics", timeout=aiohttp.ClientTimeout(total=10)) as resp:
        text = await resp.text()
    found: dict[str, float] = {}
    for name in ("atelier_discord_rest_waited_total", "atelier_discord_rest_wait_seconds_total"):
        for match in re.finditer(rf'^{name}{{priority="(\w+)"}} ([0-9.e+-]+)$', text, re.M):
            found[f"{name.removeprefix('atelier_discord_rest_').removesuffix('_total')}:{match[1]}"] = \
                float(match[2])
    skipped = re.search(r"^atelier_discord_rest_skipped_total ([0-9.e+-]+)$", text, re.M)
    found["reactions_skipped"] = float(skipped[1]) if skipped else 0.0
    return found


def finished_at(url: str) -> dict[int, float]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id, finished_at FROM jobs WHERE finished_at IS NOT NULL").fetchall()
    return {int(job_id): at.timestamp() for job_id, at in rows}


async def run(jobs: int, workers: int, per_second: float, start_rate: float | None, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, fresh_database() as url:
        root = Path(tmp)
        providers = ProviderFakes(root)
        providers.start()
        fake = FakeDiscord()
        await fake.start()
        fake.ack_deadline_s = 60.0  # this measures REST, not how fast a loaded machine acknowledges
        cluster: Cluster | None = None
        try:
            for name in PROVIDERS:
                await providers.script(name, queue_polls=1, running_polls=2)
                await providers.knobs(name, distinct_outputs=True, latency_s=0.0)
            guild = await fake.create_guild("Atelier bench")
            channels = [await guild.create_channel(f"c{n}") for n in range(CHANNELS)]
            members = [await guild.add_member(f"m{n}") for n in range(-(-jobs // JOBS_PER_MEMBER))]
            ports = [free_port() for _ in range(workers + 1)]
            env = {"PATH": os.environ.get("PATH", ""), "HOME": tmp, "PYTHONPATH": str(Path(__file__).parents[1]),
                   "DATABASE_URL": url, "DISCORD_GUILD_IDS": str(guild.id), **fake.bot_env(), **providers.env(),
                   **settings(per_second), "METRICS_HOST": "127.0.0.1", "METRICS_PORT": str(ports[0])}
            cluster = Cluster(root / "processes", env)
            await cluster.bot.start(timeout=60)
            for n in range(workers):
                await cluster.worker(env={**env, "METRICS_PORT": str(ports[n + 1])}).start(timeout=60)

            # How late the fake Discord's own loop runs: it stamps each request when it gets to it, so a late loop
            # bunches the arrivals it counts (and may answer a global 429 the bot's pace did not earn).
            fake_lag = LoopLag(0.05)

            async def start_lag() -> None:
                fake_lag.start()
            await fake.thread.run(start_lag())
            offset = time.time() - time.monotonic()  # the fake's call times are this process's monotonic clock
            begin = time.monotonic()
            gate = asyncio.Semaphore(STARTING_AT_ONCE)

            async def start(n: int) -> int:
                if start_rate is not None:
                    await asyncio.sleep(n / start_rate)
                async with gate:
                    run = await members[n // JOBS_PER_MEMBER].run_command(channels[n % CHANNELS], "imagine",
                                                                          prompt=f"a fox, take {n}")
                    return started_job((await run.reply(timeout=300)).content)

            started = await asyncio.gather(*(start(n) for n in range(jobs)))
            started_s = time.monotonic() - begin
            print(f"{jobs} jobs started in {started_s:.0f} s", file=sys.stderr, flush=True)
            await wait_results(fake, jobs, timeout)
            wall = time.monotonic() - begin
            waits = [await scrape(port) for port in ports]
            await fake.thread.run(fake_lag.stop())
            ended = finished_at(url)
        finally:
            if cluster is not None:
                await cluster.stop()
            await fake.stop()
            providers.stop()

    calls = [c for c in fake.rest.global_requests() if c.at >= begin]
    posted: dict[int, float] = {}
    for call in calls:
        content = call.body.get("content") if call.method == "POST" and isinstance(call.body, dict) else None
        match = CAPTION.search(content or "")
        if match and call.status == 200:
            posted.setdefault(int(match[1]), call.at + offset)
    delays = [posted[j] - ended[j] for j in started if j in posted and j in ended]
    span = max(c.at for c in calls) - min(c.at for c in calls)
    result_waits = [w.get("wait_seconds:result", 0.0) for w in waits]
    result_waited = [w.get("waited:result", 0.0) for w in waits]
    return {"jobs": jobs, "processes": workers + 1, "per_second": per_second,
            "start_rate": start_rate, "started_s": round(started_s, 1), "wall_s": round(wall, 1),
            "global_429s": fake.rest.global_429s, "peak_per_s": fake.rest.peak_per_second,
            "mean_per_s": round(len(calls) / span, 1), "results_posted": len(posted),
            "rest_per_job": round(len(calls) / jobs, 2),
            "result_delay_p50_s": round(pct(delays, 50), 2), "result_delay_p99_s": round(pct(delays, 99), 2),
            "result_delay_mean_s": round(statistics.fmean(delays), 2) if delays else None,
            "result_posts_waited": int(sum(result_waited)),
            "result_wait_s_per_post": round(sum(result_waits) / max(1, len(posted)), 3),
            "reactions_skipped": int(sum(w["reactions_skipped"] for w in waits)),
            "fake_lag_p99_ms": round(pct(fake_lag.samples, 99) * 1000), "fake_lag_max_ms": round(
                max(fake_lag.samples, default=0.0) * 1000),
            "budget_waits": waits}


COLUMNS = ("jobs", "processes", "start_rate", "global_429s", "peak_per_s", "mean_per_s", "results_posted",
           "rest_per_job", "result_delay_p50_s", "result_delay_p99_s", "result_posts_waited",
           "result_wait_s_per_post", "reactions_skipped", "fake_lag_p99_ms", "fake_lag_max_ms", "started_s", "wall_s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--per-second", type=float, default=40.0)
    parser.add_argument("--light-jobs", type=int, default=100)
    parser.add_argument("--light-rate", type=float, default=2.0, help="jobs started a second in the light run")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = [asyncio.run(run(args.jobs, args.workers, args.per_second, None, args.timeout))]
    if args.light_jobs:
        rows.append(asyncio.run(run(args.light_jobs, args.workers, args.per_second, args.light_rate, args.timeout)))
    print(f"DISCORD_REST_PER_SECOND={args.per_second:g}; the fake's global limit 50/s; {machine()}")
    print("  ".join(f"{c:>18}" for c in COLUMNS))
    for row in rows:
        print("  ".join(f"{row[c]!s:>18}" for c in COLUMNS))
    emit({"rows": rows, "machine": machine()}, args.json)


if __name__ == "__main__":
    main()
