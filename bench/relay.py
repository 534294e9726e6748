"""Benchmark: a webhook call that lands on one process completes a job another process follows.

    uv run python -m bench.relay [--jobs 300] [--min 5] [--max 30] [--json out.json]

Two real processes on one fresh PostgreSQL database (the server ATELIER_TEST_POSTGRES names; default the local
one), and the fal fake in a third. The listener process serves the webhook endpoint and follows nothing; the
follower creates the jobs and follows them, asking fal to call the listener, and polls only as its safety net (a
minute apart). Each verified call is recorded in the store's inbox by the listener and announced with NOTIFY; the
follower wakes, reads the result and delivers. Reports the time from fal finishing a job to its delivery by the
follower (median and p95): everything the relay adds, and the download and delivery. Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psycopg

from bench.common import ROOT, admin, emit, fake_providers, free_port, machine, pct, print_fields
from bot.app import open_app
from bot.jobs import RunnerConfig
from bot.settings import Settings


async def listen(database_url: str, fake_url: str, port: int) -> None:
    """The process providers call: it receives and verifies the calls, and passes on what it does not follow."""
    settings = Settings(_env_file=None, database_url=database_url, fal_key="bench-key",  # type: ignore[call-arg]
                        fal_queue_url=fake_url, webhook_public_url=f"http://127.0.0.1:{port}",
                        webhook_host="127.0.0.1", webhook_port=port, fal_jwks_url=f"{fake_url}/.well-known/jwks.json",
                        log_level="WARNING")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with open_app(settings, deliverers={}, config=RunnerConfig(adopt=False), start=False, listen=True):
        print("ready", flush=True)
        await stop.wait()


def run(jobs: int, low: float, high: float) -> dict[str, Any]:
    from tests.pg import fresh_database

    with tempfile.TemporaryDirectory() as tmp, fresh_database() as url, fake_providers("fal") as fakes:
        fake = fakes["fal"]
        asyncio.run(admin(fake, "/_admin/script", {"duration_range": [low, high], "queue_polls": 0}))
        port = free_port()
        listener = subprocess.Popen([sys.executable, "-m", "bench.relay", "--listener", url, fake, str(port)],
                                    cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
            out = Path(tmp) / "follower.json"
            subprocess.run([sys.executable, "-m", "bench.runner_load", "--jobs", str(jobs), "--min", str(low),
                            "--max", str(high), "--database-url", url, "--fake-url", fake, "--webhook-url",
                            f"http://127.0.0.1:{port}", "--json", str(out)],
                           cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
            follower = json.loads(out.read_text())
            done = {rid: job["done"] for rid, job in asyncio.run(admin(fake, "/_admin/stats"))["jobs"].items()}
            with psycopg.connect(url) as conn:
                inbox = conn.execute("SELECT remote_id, extract(epoch FROM received_at) FROM webhook_inbox").fetchall()
            to_inbox = [float(at) - done[rid] for rid, at in inbox if done.get(rid)]
        finally:
            listener.send_signal(signal.SIGTERM)
            listener.wait(timeout=30)
    return {"jobs": jobs, "durations_s": [low, high],
            "call_to_delivery_p50_ms": follower["added_latency_p50_ms"],
            "call_to_delivery_p95_ms": follower["added_latency_p95_ms"],
            "of_which_to_inbox_p50_ms": round(pct(to_inbox, 50) * 1000, 1),
            "of_which_to_inbox_p95_ms": round(pct(to_inbox, 95) * 1000, 1),
            "status_polls_per_job": follower["status_polls_per_job"],
            "follower_loop_lag_p99_ms": follower["loop_lag_p99_ms"], "machine": machine()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--min", type=float, default=5.0)
    parser.add_argument("--max", type=float, default=30.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--listener", nargs=3, metavar=("DATABASE_URL", "FAKE_URL", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.listener:
        asyncio.run(listen(args.listener[0], args.listener[1], int(args.listener[2])))
        return
    result = run(args.jobs, args.min, args.max)
    print_fields(result)
    emit(result, args.json)


if __name__ == "__main__":
    main()
