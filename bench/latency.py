"""Benchmark: how long after a job finishes at the provider does each client have the image, and at what cost.

    uv run python -m bench.latency [--jobs 200] [--min 2] [--max 20] [--seed 1] [--provider fal|novita]
                                   [--modes atelier-webhooks,atelier,fal-client,poller-2.5] [--set KEY=VALUE ...]
                                   [--json out.json]

One population of jobs (the same count and, by a seeded fake, the very same durations, uniform in [min, max]) is
run through each client in turn against the fake providers in their own process on 127.0.0.1:

- atelier-webhooks: the real runner with its webhook listener; the fake calls it back (fal: signed);
- atelier: the real runner (`open_app`) with a timed deliverer; done = delivered (downloaded, checked, stored);
- fal-client: fal's own `AsyncClient.subscribe` (default 0.1 s interval), then the image downloaded;
- poller-2.5: a minimal aiohttp client polling status every 2.5 s, then the result, then the image.

The clients run one after another, not side by side: each then has the machine (2 cores here) and the fake to
itself, so one client's request rate cannot slow another's answers, and the fake's request counts can be
diffed between rows. fal-client and the poller always talk to the fal fake; `--provider novita` moves only
Atelier. Added latency = when the client had the image - when the fake finished the job. Not a pass/fail test.

A further Atelier row is one entry in MODES with its own settings (see `AtelierMode`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import ROOT, LoopLag, admin, cpu_seconds, emit, fake_providers, free_port, machine, pct
from bot.app import open_app
from bot.jobs import RunnerConfig
from bot.operations import ImagineRequest
from bot.settings import Settings
from bot.store.models import Job, JobState, Origin, Subject

KEY = "bench-key"
FAL_APP = "fal-ai/glm-image"


@dataclass(frozen=True)
class Population:
    jobs: int
    low: float
    high: float
    seed: int

    def prompt(self, i: int) -> str:
        return f"latency bench {i}"

    @property
    def timeout_s(self) -> float:
        return self.high * 3 + 120


@dataclass
class Outcome:
    """What a client saw: when it had each job's image (by the provider's job id), and which jobs failed."""

    done_at: dict[str, float] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)


RunClient = Callable[[Population, str], Awaitable[Outcome]]


# --- a. Atelier ----------------------------------------------------------------------------------------------


class TimedDelivery:
    def __init__(self, expected: int) -> None:
        self.outcome = Outcome()
        self.expected = expected
        self.all_done = asyncio.Event()

    async def deliver(self, job: Job) -> None:
        now = time.time()
        remote = (job.handle.remote_id if job.handle is not None else "") or f"atelier-{job.id}"
        if job.state == JobState.SUCCEEDED:
            self.outcome.done_at[remote] = now
        else:
            self.outcome.failed.append(remote)
        if len(self.outcome.done_at) + len(self.outcome.failed) >= self.expected:
            self.all_done.set()


def atelier_settings(provider: str, url: str, pop: Population, tmp: str, extra: dict[str, Any]) -> Settings:
    base: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp}/bench.db", "quota_daily": 10**6, "quota_concurrent": 10**6,
        "provider_requests_per_second": 0, "job_deadline_s": pop.high * 5, "log_level": "WARNING",
    }
    if provider == "fal":
        base |= {"fal_key": KEY, "fal_queue_url": url, "fal_max_parallel": pop.jobs}
    else:
        # The async GLM path: polling and webhooks are what this benchmark measures (Seedream answers at once).
        base |= {"novita_api_key": KEY, "novita_base_url": url, "novita_max_parallel": pop.jobs,
                 "novita_model": "glm-image"}
    return Settings(_env_file=None, **(base | extra))


async def run_atelier(pop: Population, url: str, *, provider: str, extra: dict[str, Any],
                      webhooks: bool = False) -> Outcome:
    with tempfile.TemporaryDirectory() as tmp:
        if webhooks:
            # The listener on a free loopback port; fal's keys come from the fake's own JWKS.
            port = free_port()
            extra = extra | {"webhook_public_url": f"http://127.0.0.1:{port}", "webhook_host": "127.0.0.1",
                             "webhook_port": port, "fal_jwks_url": f"{url}/.well-known/jwks.json"}
        settings = atelier_settings(provider, url, pop, tmp, extra)
        delivery = TimedDelivery(pop.jobs)
        config = RunnerConfig(origins=frozenset({Origin.DISCORD}), adopt=True)
        async with open_app(settings, deliverers={"discord": delivery}, config=config, listen=webhooks) as app:
            await asyncio.gather(*(
                app.runner.create(Subject.member(1, f"user{i % 200}"), Origin.DISCORD,
                                  ImagineRequest(prompt=pop.prompt(i)), provider=provider)
                for i in range(pop.jobs)))
            await asyncio.wait_for(delivery.all_done.wait(), timeout=pop.timeout_s)
        return delivery.outcome


# --- b. fal-client ---------------------------------------------------------------------------------------------


async def run_fal_client(pop: Population, url: str) -> Outcome:
    """fal's `subscribe` as its docs show it (one AsyncClient, default poll interval), then the download."""
    import fal_client
    import fal_client.client

    # The queue host is only configurable as an https host (FAL_QUEUE_RUN_HOST); the fake is plain http, so
    # point the module's URL prefix at it, as tests/providers/test_fal.py does.
    fal_client.client.QUEUE_URL_FORMAT = f"{url}/"
    client = fal_client.AsyncClient(key=KEY)
    http = await client._client  # the client's own httpx session, reused for the download
    outcome = Outcome()

    async def one(i: int) -> None:
        ids: list[str] = []
        try:
            result = await client.subscribe(FAL_APP, arguments={"prompt": pop.prompt(i)}, on_enqueue=ids.append)
            response = await http.get(result["images"][0]["url"])
            response.raise_for_status()
            assert response.content
            outcome.done_at[ids[0]] = time.time()
        except Exception:
            outcome.failed.append(ids[0] if ids else f"fal-client-{i}")

    try:
        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(pop.jobs))), timeout=pop.timeout_s)
    finally:
        await http.aclose()
    return outcome


# --- c. a fixed-interval poller ---------------------------------------------------------------------------------


async def run_fixed_poller(pop: Population, url: str, *, interval: float) -> Outcome:
    """Submit, look at the status every `interval` seconds until COMPLETED, get the result, download the image."""
    headers = {"Authorization": f"Key {KEY}"}
    outcome = Outcome()

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        request_id = f"poller-{i}"
        try:
            async with session.post(f"{url}/{FAL_APP}", json={"prompt": pop.prompt(i)}) as resp:
                resp.raise_for_status()
                submitted = await resp.json()
            request_id = submitted["request_id"]
            while True:
                await asyncio.sleep(interval)
                async with session.get(submitted["status_url"]) as resp:
                    if resp.status >= 300 and resp.status != 202:
                        resp.raise_for_status()
                    if (await resp.json())["status"] == "COMPLETED":
                        break
            async with session.get(submitted["response_url"]) as resp:
                resp.raise_for_status()
                result = await resp.json()
            async with session.get(result["images"][0]["url"]) as resp:
                resp.raise_for_status()
                assert await resp.read()
            outcome.done_at[request_id] = time.time()
        except Exception:
            outcome.failed.append(request_id)

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        await asyncio.wait_for(asyncio.gather(*(one(session, i) for i in range(pop.jobs))), timeout=pop.timeout_s)
    return outcome


# --- the rows ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AtelierMode:
    """An Atelier row: the runner with these settings on top of the benchmark's own; `webhooks` serves the
    webhook listener on a free port and asks the provider to call it."""

    name: str
    label: str
    settings: dict[str, Any] = field(default_factory=dict)
    webhooks: bool = False


@dataclass(frozen=True)
class ClientMode:
    name: str
    label: str
    run: RunClient


MODES: dict[str, AtelierMode | ClientMode] = {mode.name: mode for mode in (
    AtelierMode("atelier-webhooks", "Atelier (webhooks)", webhooks=True),
    AtelierMode("atelier", "Atelier (polling)"),
    ClientMode("fal-client", "fal-client subscribe", run_fal_client),
    ClientMode("poller-2.5", "fixed 2.5 s poller",
               lambda pop, url: run_fixed_poller(pop, url, interval=2.5)),
)}


async def measure(mode: AtelierMode | ClientMode, pop: Population, urls: dict[str, str], provider: str,
                  extra: dict[str, Any]) -> dict[str, Any]:
    fake = provider if isinstance(mode, AtelierMode) else "fal"
    url = urls[fake]
    # A fresh script restarts the seeded durations: every row gets the same ones.
    await admin(url, "/_admin/script", {"duration_range": [pop.low, pop.high], "queue_polls": 0, "seed": pop.seed})
    before = await admin(url, "/_admin/stats")
    lag = LoopLag()
    lag.start()
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    if isinstance(mode, AtelierMode):
        outcome = await run_atelier(pop, url, provider=provider, extra=mode.settings | extra,
                                    webhooks=mode.webhooks)
    else:
        outcome = await mode.run(pop, url)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    await lag.stop()
    after = await admin(url, "/_admin/stats")

    jobs = {job_id: job for job_id, job in after["jobs"].items() if job_id not in before["jobs"]}
    added, fraction = [], []
    for job_id, had_at in outcome.done_at.items():
        job = jobs[job_id]
        added.append(had_at - job["done"])
        fraction.append((had_at - job["done"]) / (job["done"] - job["created"]))
    n = pop.jobs
    api_requests = after["requests"] - before["requests"]
    downloads = after["downloads"] - before["downloads"]
    status = sum(job["polls"] for job in jobs.values())
    return {
        "mode": mode.name, "label": mode.label, "provider": fake, "jobs": n, "submitted": len(jobs),
        "failed": len(outcome.failed), "wall_s": round(wall, 1),
        "added_latency_p50_s": round(pct(added, 50), 3),
        "added_latency_p95_s": round(pct(added, 95), 3),
        "added_latency_max_s": round(max(added, default=float("nan")), 3),
        "added_over_duration_p50": round(statistics.median(fraction), 4) if fraction else None,
        "status_requests_per_job": round(status / n, 2),
        "api_requests_per_job": round(api_requests / n, 2),  # submit + status + result (+ anything else)
        "downloads_per_job": round(downloads / n, 2),
        "requests_per_job": round((api_requests + downloads) / n, 2),
        "client_cpu_ms_per_job": round(cpu / n * 1000, 2),
        "client_loop_lag_p99_ms": round(pct(lag.samples, 99) * 1000, 1),
        "durations": sorted(round(job["done"] - job["created"], 6) for job in jobs.values()),
    }


async def run(pop: Population, modes: list[str], provider: str, extra: dict[str, Any]) -> dict[str, Any]:
    names = sorted({"fal", provider})
    with fake_providers(*names, key=KEY) as urls:
        rows = [await measure(MODES[name], pop, urls, provider, extra) for name in modes]
    durations = [row.pop("durations") for row in rows]
    reference = next((row for row in rows if row["mode"] == "atelier"), None)
    for row in rows:
        ratio = None
        if reference and reference["added_latency_p50_s"] > 0:
            ratio = round(row["added_latency_p50_s"] / reference["added_latency_p50_s"], 2)
        row["p50_vs_atelier"] = ratio
    return {
        "benchmark": "latency", "jobs": pop.jobs, "durations_s": [pop.low, pop.high], "seed": pop.seed,
        "provider": provider, "atelier_settings": extra, "order": "sequential",
        "same_durations_in_every_row": all(d == durations[0] for d in durations),
        "rows": rows, "targets": targets(rows), "machine": machine(),
    }


def targets(rows: list[dict[str, Any]]) -> dict[str, bool]:
    """The issue's goals for Atelier polling alone, where the rows they compare were run."""
    by_mode = {row["mode"]: row for row in rows}
    atelier, poller, fal = by_mode.get("atelier"), by_mode.get("poller-2.5"), by_mode.get("fal-client")
    met: dict[str, bool] = {}
    if atelier:
        met["atelier_p50_under_10pct_of_duration"] = atelier["added_over_duration_p50"] < 0.10
    if atelier and poller:
        met["atelier_p50_at_most_a_fifth_of_poller"] = (
            atelier["added_latency_p50_s"] <= poller["added_latency_p50_s"] / 5)
    if atelier and fal:
        met["atelier_fewer_status_requests_than_fal_client"] = (
            atelier["status_requests_per_job"] < fal["status_requests_per_job"])
    return met


COLUMNS = [
    ("label", "client", "{}"),
    ("added_latency_p50_s", "added p50 s", "{:.2f}"),
    ("added_latency_p95_s", "added p95 s", "{:.2f}"),
    ("added_over_duration_p50", "added/duration p50", "{:.1%}"),
    ("status_requests_per_job", "status req/job", "{:.1f}"),
    ("requests_per_job", "all req/job", "{:.1f}"),
    ("p50_vs_atelier", "p50 vs Atelier", "{}x"),
    ("failed", "failed", "{}"),
    ("client_cpu_ms_per_job", "client CPU ms/job", "{:.1f}"),
    ("client_loop_lag_p99_ms", "client loop lag p99 ms", "{:.0f}"),
]


def table(result: dict[str, Any]) -> str:
    cells = [[head for _, head, _ in COLUMNS]]
    for row in result["rows"]:
        cells.append([fmt.format(row[key]) if row[key] is not None else "-" for key, _, fmt in COLUMNS])
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def parse_setting(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    try:
        return key.strip().lower(), json.loads(value)
    except ValueError:
        return key.strip().lower(), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--min", type=float, default=2.0)
    parser.add_argument("--max", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--provider", choices=["fal", "novita"], default="fal", help="for the Atelier rows")
    parser.add_argument("--modes", default=",".join(MODES),
                        help=f"comma-separated rows to run, in order; known: {', '.join(MODES)}")
    parser.add_argument("--set", dest="settings", type=parse_setting, action="append", default=[],
                        metavar="KEY=VALUE", help="an extra Atelier setting for every Atelier row (repeatable)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "latency.json")
    args = parser.parse_args()
    modes = [name.strip() for name in args.modes.split(",") if name.strip()]
    unknown = [name for name in modes if name not in MODES]
    if unknown:
        parser.error(f"unknown mode(s) {unknown}; known: {', '.join(MODES)}")
    pop = Population(args.jobs, args.min, args.max, args.seed)
    result = asyncio.run(run(pop, modes, args.provider, dict(args.settings)))
    print(f"{pop.jobs} jobs of {pop.low:g}-{pop.high:g} s (seed {pop.seed}), clients one after another; "
          f"Atelier on {args.provider}; same durations in every row: {result['same_durations_in_every_row']}")
    print(f"machine: {result['machine']}")
    print(table(result))
    for goal, met in result["targets"].items():
        print(f"target {goal}: {'met' if met else 'NOT met'}")
    emit(result, args.json)


if __name__ == "__main__":
    main()
