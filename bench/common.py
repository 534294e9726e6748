"""Helpers shared by the benchmarks: the fakes in their own process, event-loop lag, memory, percentiles."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def fake_providers(*names: str, key: str = "bench-key") -> Iterator[dict[str, str]]:
    """Start the fake providers in a separate process; yield their base URLs."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.serve", *names, "--key", key], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        urls: dict[str, str] = json.loads(proc.stdout.readline())
        yield urls
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def admin(url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    async with aiohttp.ClientSession() as session:
        if body is None:
            async with session.get(f"{url}{path}") as resp:
                return await resp.json()
        async with session.post(f"{url}{path}", json=body) as resp:
            return await resp.json()


class LoopLag:
    """Measures how late the event loop wakes a task that sleeps `interval` seconds."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.samples.append(max(0.0, time.perf_counter() - start - self.interval))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine() -> str:
    cpus = os.cpu_count()
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpus} cores, {mem_gb:.0f} GiB, Python {sys.version.split()[0]}, {sys.platform}"


def print_fields(result: dict[str, Any]) -> None:
    """One `name  value` line per figure, aligned."""
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")


def emit(result: dict[str, Any], path: Path | None) -> None:
    """The result as one JSON line on stdout (for scripts), and as a file when a path is given."""
    print(json.dumps(result))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2))
