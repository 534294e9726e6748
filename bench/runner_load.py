"""Benchmark: one process holding N jobs in flight against the fake providers (in their own process).

    uv run python -m bench.runner_load [--jobs 2000] [--min 2] [--max 20] [--webhooks] [--json out.json]
        [--database-url URL --fake-url URL --go FILE]  (one of several processes on one database: bench.scale)
        [--webhook-url URL]  (ask for webhook calls that another process receives: bench.relay)

Reports event-loop lag, peak memory, CPU per job, job creates per second, store writes per second, provider
requests per job, and the time from the fake provider finishing a job to its delivery (median and p95). Not a
pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    LoopLag,
    admin,
    cpu_seconds,
    emit,
    fake_providers,
    free_port,
    machine,
    pct,
    peak_rss_mb,
    print_fields,
)
from bot.app import open_app
from bot.jobs import RunnerConfig
from bot.operations import ImagineRequest
from bot.settings import Settings
from bot.store.models import Job, Origin, Subject


class TimedDelivery:
    def __init__(self) -> None:
        self.delivered: dict[int, tuple[float, Job]] = {}
        self.all_done = asyncio.Event()
        self.expected = 0

    async def deliver(self, job: Job) -> None:
        self.delivered[job.id] = (time.time(), job)
        if len(self.delivered) >= self.expected:
            self.all_done.set()


class CountingStore:
    """Wraps the store to count writes (every call that changes a row)."""

    WRITES = ("create_job", "update_job", "transition", "refund", "claim", "renew_leases", "release",
              "enqueue_delivery", "delivery_failed", "delivery_done", "mark_retired")

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.writes = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name in self.WRITES:
            async def counted(*args: Any, **kwargs: Any) -> Any:
                self.writes += 1
                return await attr(*args, **kwargs)
            return counted
        return attr


@dataclass
class Shared:
    """This process is one of several on one database (bench.scale, bench.relay)."""

    database_url: str | None = None
    fake_url: str | None = None
    go: Path | None = None  # every process creates its jobs once this file exists
    webhook_url: str | None = None  # calls go to another process's listener
    tag: str = "p"


@contextlib.contextmanager
def _fake(provider: str, shared: Shared) -> Iterator[str]:
    if shared.fake_url:
        yield shared.fake_url
        return
    with fake_providers(provider) as urls:
        yield urls[provider]


def _settings(url: str, database_url: str, *, high: float, webhooks: bool, webhook_url: str | None) -> Settings:
    hooks: dict[str, Any] = {}
    if webhooks:
        port = free_port()
        hooks = {"webhook_public_url": f"http://127.0.0.1:{port}", "webhook_host": "127.0.0.1",
                 "webhook_port": port, "fal_jwks_url": f"{url}/.well-known/jwks.json"}
    elif webhook_url:
        # Completed by calls another process receives: polls only as the safety net, a minute apart.
        hooks = {"webhook_public_url": webhook_url, "webhook_safety_poll_s": 60.0}
    return Settings(_env_file=None, database_url=database_url,  # type: ignore[call-arg]
                    fal_key="bench-key", fal_queue_url=url, fal_max_parallel=10**5, quota_daily=10**7,
                    quota_concurrent=10**6, provider_requests_per_second=0, poll_max_s=10.0,
                    job_deadline_s=high * 5, log_level="WARNING", **hooks)


async def run(jobs: int, low: float, high: float, provider: str = "fal", webhooks: bool = False,
              shared: Shared | None = None) -> dict[str, Any]:
    shared = shared or Shared()
    with tempfile.TemporaryDirectory() as tmp, _fake(provider, shared) as url:
        if not shared.fake_url:
            await admin(url, "/_admin/script", {"duration_range": [low, high], "queue_polls": 0})
        settings = _settings(url, shared.database_url or f"sqlite:///{tmp}/bench.db", high=high,
                             webhooks=webhooks, webhook_url=shared.webhook_url)
        delivery = TimedDelivery()
        delivery.expected = jobs
        config = RunnerConfig(origins=frozenset({Origin.DISCORD}), adopt=True)
        lag = LoopLag()
        async with open_app(settings, deliverers={"discord": delivery}, config=config, listen=webhooks) as app:
            counter = CountingStore(app.store)
            app.runner.store = counter  # type: ignore[assignment]
            lag.start()
            cpu0, t0 = cpu_seconds(), time.perf_counter()
            peak = 0

            async def watch() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, len(app.runner._live))
                    await asyncio.sleep(0.1)

            watcher = asyncio.create_task(watch())

            async def create(i: int) -> None:
                await app.runner.create(Subject.member(1, f"{shared.tag}-user{i % 200}"), Origin.DISCORD,
                                        ImagineRequest(prompt=f"bench {i}"), provider=provider)

            if shared.go is not None:
                print("ready", flush=True)
                while not shared.go.exists():
                    await asyncio.sleep(0.005)
                cpu0, t0 = cpu_seconds(), time.perf_counter()
            for start in range(0, jobs, 50):  # arrivals in bursts of 50, as a busy server would see them
                await asyncio.gather(*(create(i) for i in range(start, min(jobs, start + 50))))
            created_s = time.perf_counter() - t0
            await asyncio.wait_for(delivery.all_done.wait(), timeout=high * 10 + 120)
            wall = time.perf_counter() - t0
            cpu = cpu_seconds() - cpu0
            await lag.stop()
            watcher.cancel()
            stats = await admin(url, "/_admin/stats")
        added = []
        for _job_id, (delivered_at, job) in delivery.delivered.items():
            remote = job.handle.remote_id if job.handle is not None else None
            done = stats["jobs"].get(remote, {}).get("done")
            if done:
                added.append(delivered_at - done)
        return {
            "jobs": jobs, "durations_s": [low, high], "provider": provider,
            "completion": "webhooks" if webhooks else "polling",
            "create_all_s": round(created_s, 2), "creates_per_s": round(jobs / created_s, 1),
            "wall_s": round(wall, 2), "peak_in_flight": peak,
            "loop_lag_p50_ms": round(pct(lag.samples, 50) * 1000, 2),
            "loop_lag_p99_ms": round(pct(lag.samples, 99) * 1000, 2),
            "loop_lag_max_ms": round(max(lag.samples) * 1000, 2),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "cpu_ms_per_job": round(cpu / jobs * 1000, 2),
            "store_writes_per_s": round(counter.writes / wall, 1),
            "store_writes_per_job": round(counter.writes / jobs, 2),
            "provider_requests_per_job": round(stats["requests"] / jobs, 2),
            "status_polls_per_job": round(stats["status_polls"] / jobs, 2),
            "added_latency_p50_ms": round(pct(added, 50) * 1000, 1),
            "added_latency_p95_ms": round(pct(added, 95) * 1000, 1),
            "machine": machine(),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--min", type=float, default=2.0)
    parser.add_argument("--max", type=float, default=20.0)
    parser.add_argument("--webhooks", action="store_true", help="complete jobs by fal's signed webhook calls")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--database-url", help="a database shared with other processes (default: a fresh SQLite)")
    parser.add_argument("--fake-url", help="a fal fake already running (default: start one)")
    parser.add_argument("--go", type=Path, help="wait for this file before creating jobs")
    parser.add_argument("--webhook-url", help="ask for webhook calls at another process's listener")
    parser.add_argument("--tag", default="p", help="names this process's members apart from the others'")
    args = parser.parse_args()
    shared = Shared(args.database_url, args.fake_url, args.go, args.webhook_url, args.tag)
    result = asyncio.run(run(args.jobs, args.min, args.max, webhooks=args.webhooks, shared=shared))
    print_fields(result)
    emit(result, args.json)


if __name__ == "__main__":
    main()
