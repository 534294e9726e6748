"""Benchmark: how one Atelier process grows with the number of jobs in flight (100, 1,000, 5,000 by default).

    uv run python -m bench.scale [--sizes 100,1000,5000] [--completion webhooks|polling] [--json out.json]

Each size runs `bench.runner_load` in a fresh process (peak memory is per process), against the fake fal in its
own process, jobs of 2-20 s. Prints a table of event-loop lag, peak RSS, CPU per job and store writes per
second, and how each grows from the smallest size to the largest. Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import ROOT, emit, machine

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--completion", choices=("webhooks", "polling"), default="webhooks")
    parser.add_argument("--min", type=float, default=2.0)
    parser.add_argument("--max", type=float, default=20.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
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
