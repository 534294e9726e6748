"""Starting the runner process (tests/harness/runner_proc.py) that crash and downtime tests SIGKILL."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


async def start_runner_process(tmp_path: Path, settings: Mapping[str, str], *args: str) -> asyncio.subprocess.Process:
    """A runner on tmp_path's database with these settings (environment names), once it says READY. Its
    deliveries are written to tmp_path/deliveries.jsonl."""
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(ROOT),
           "DATABASE_URL": f"sqlite:///{tmp_path}/atelier.db", "LEASE_SECONDS": "30", "LOG_LEVEL": "WARNING",
           **settings}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.harness.runner_proc", "--deliveries", str(tmp_path / "deliveries.jsonl"),
        *args, cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line, "runner process exited early"
        if line.strip() == "READY":
            return proc
