"""Benchmark: one process holding N jobs in flight against the fake providers (in their own process).

    uv run python -m bench.runner_load [--jobs 2000] [--min 2] [--max 20] [--webhooks] [--json out.json]

Reports event-loop lag, peak memory, CPU per job, store writes per second, provider requests per job, and the
time from the fake provider finishing a job to its delivery (median and p95). Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
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


async def run(jobs: int, low: float, high: float, provider: str = "fal", webhooks: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, fake_providers(provider) as urls:
        url = urls[provider]
        await admin(url, "/_admin/script", {"duration_range": [low, high], "queue_polls": 0})
        hooks: dict[str, Any] = {}
        if webhooks:
            port = free_port()
            hooks = {"webhook_public_url": f"http://127.0.0.1:{port}", "webhook_host": "127.0.0.1",
                     "webhook_port": port, "fal_jwks_url": f"{url}/.well-known/jwks.json"}
        settings = Settings(_env_file=None, database_url=f"sqlite:///{tmp}/bench.db",  # type: ignore[call-arg]
                            fal_key="bench-key", fal_queue_url=url, fal_max_parallel=jobs, quota_daily=10**6,
                            quota_concurrent=10**6, provider_requests_per_second=0, poll_max_s=10.0,
                            job_deadline_s=high * 5, log_level="WARNING", **hooks)
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
                await app.runner.create(Subject.member(1, f"user{i % 200}"), Origin.DISCORD,
                                        ImagineRequest(prompt=f"bench {i}"), provider=provider)

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
            "create_all_s": round(created_s, 2), "wall_s": round(wall, 2), "peak_in_flight": peak,
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
    args = parser.parse_args()
    result = asyncio.run(run(args.jobs, args.min, args.max, webhooks=args.webhooks))
    print_fields(result)
    emit(result, args.json)


if __name__ == "__main__":
    main()
