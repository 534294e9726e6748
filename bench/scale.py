"""Benchmark: how Atelier grows with the number of jobs in flight (100, 1,000, 5,000 by default).

    uv run python -m bench.scale [--sizes 100,1000,5000] [--completion webhooks|polling] [--json out.json]
    uv run python -m bench.scale --postgres [--processes 3] [--sizes 1000,10000]

Each size runs `bench.runner_load` in a fresh process (peak memory is per process), against the fake fal in its
own process, jobs of 2-20 s. Prints a table of event-loop lag, peak RSS, CPU per job and store writes per
second, and how each grows from the smallest size to the largest. With --postgres, each size runs on a fresh
PostgreSQL database (the server ATELIER_TEST_POSTGRES names; default the local one) shared by --processes
processes that create their share of the jobs at the same moment; it reports the jobs in flight across them, job
creates per second over all of them, and each process's loop lag p99 and peak RSS. Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import ROOT, admin, emit, fake_providers, machine

COLUMNS = ("jobs", "peak_in_flight", "loop_lag_p99_ms", "peak_rss_mb", "cpu_ms_per_job", "store_writes_per_s",
           "status_polls_per_job", "added_latency_p50_ms", "added_latency_p95_ms", "wall_s")


def run_size(jobs: int, completion: str, low: float, high: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, "-m", "bench.runner_load", "--jobs", str(jobs), "--min", str(low),
                   "--max", str(high), "--json", str(out)]
        if completion == "webhooks":
            command.append("--webhooks")
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def run_shared(jobs: int, processes: int, low: float, high: float, completion: str) -> dict[str, Any]:
    from tests.pg import fresh_database

    with tempfile.TemporaryDirectory() as tmp, fresh_database() as url, fake_providers("fal") as fakes:
        asyncio.run(admin(fakes["fal"], "/_admin/script", {"duration_range": [low, high], "queue_polls": 0}))
        go = Path(tmp) / "go"
        outs = [Path(tmp) / f"p{n}.json" for n in range(processes)]
        share = [jobs // processes + (n < jobs % processes) for n in range(processes)]
        procs = [subprocess.Popen(
            [sys.executable, "-m", "bench.runner_load", "--jobs", str(share[n]), "--min", str(low), "--max",
             str(high), "--json", str(outs[n]), "--database-url", url, "--fake-url", fakes["fal"], "--go", str(go),
             "--tag", f"p{n}", *(["--webhooks"] if completion == "webhooks" else [])],
            cwd=ROOT, stdout=subprocess.PIPE, text=True) for n in range(processes)]
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        go.touch()  # every process is connected: they create their jobs at once
        for proc in procs:
            proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"a load process failed ({proc.returncode})")
        each = [json.loads(out.read_text()) for out in outs]
    return {"jobs": jobs, "processes": processes,
            "peak_in_flight": sum(r["peak_in_flight"] for r in each),
            "creates_per_s": round(jobs / max(r["create_all_s"] for r in each), 1),
            "loop_lag_p99_ms": [r["loop_lag_p99_ms"] for r in each],
            "peak_rss_mb": [r["peak_rss_mb"] for r in each],
            "cpu_ms_per_job": round(sum(r["cpu_ms_per_job"] * r["jobs"] for r in each) / jobs, 2),
            "added_latency_p50_ms": max(r["added_latency_p50_ms"] for r in each),
            "wall_s": max(r["wall_s"] for r in each)}


SHARED_COLUMNS = ("jobs", "processes", "peak_in_flight", "creates_per_s", "loop_lag_p99_ms", "peak_rss_mb",
                  "cpu_ms_per_job", "added_latency_p50_ms", "wall_s")


def main_shared(args: argparse.Namespace) -> None:
    rows = []
    for jobs in [int(s) for s in args.sizes.split(",")]:
        rows.append(run_shared(jobs, args.processes, args.min, args.max, args.completion))
        print(f"{jobs} jobs done", file=sys.stderr, flush=True)
    print(f"PostgreSQL, {args.processes} processes; completion: {args.completion}; jobs of {args.min:g}-{args.max:g} s;"
          f" {machine()}")
    print("  ".join(f"{c:>22}" for c in SHARED_COLUMNS))
    for row in rows:
        print("  ".join(f"{row[c]!s:>22}" for c in SHARED_COLUMNS))
    emit({"postgres": rows, "machine": machine()}, args.json)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--completion", choices=("webhooks", "polling"), default="webhooks")
    parser.add_argument("--min", type=float, default=2.0)
    parser.add_argument("--max", type=float, default=20.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--postgres", action="store_true", help="several processes on one PostgreSQL database")
    parser.add_argument("--processes", type=int, default=3)
    args = parser.parse_args()
    if args.postgres:
        main_shared(args)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for jobs in sizes:
        rows.append(run_size(jobs, args.completion, args.min, args.max))
        print(f"{jobs} jobs done", file=sys.stderr, flush=True)
    print(f"completion: {args.completion}; jobs of {args.min:g}-{args.max:g} s; {machine()}")
    print("  ".join(f"{c:>20}" for c in COLUMNS))
    for row in rows:
        print("  ".join(f"{row[c]!s:>20}" for c in COLUMNS))
    first, last = rows[0], rows[-1]
    factor = last["jobs"] / first["jobs"]
    growth = {c: round(last[c] / first[c], 2) if first[c] else None
              for c in ("loop_lag_p99_ms", "peak_rss_mb", "cpu_ms_per_job", "store_writes_per_s")}
    print(f"from {first['jobs']} to {last['jobs']} jobs (x{factor:g}): " +
          ", ".join(f"{k} x{v}" for k, v in growth.items()))
    result = {"completion": args.completion, "rows": rows, "growth": growth, "machine": machine()}
    emit(result, args.json)


if __name__ == "__main__":
    main()
