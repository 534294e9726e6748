"""A runner process for the crash tests: the real Runner, store and providers in their own process, with a
delivery target that appends to a file the way a receiver without idempotency keys would be checked.

    python -m tests.harness.runner_proc --deliveries FILE [--create N] [--provider NAME] [--block FLAGFILE] [--drain]

Jobs are created as a Discord-origin subject so that a restarted process adopts them. Deliveries fail while
FLAGFILE exists (to leave jobs finished but undelivered). With --drain, SIGTERM drains the process as any long-running
process kind does (bot.ops.drain) and it exits 0. Prints "CREATED <id>" and "READY" on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from bot.app import open_app
from bot.jobs import RunnerConfig
from bot.operations import ImagineRequest
from bot.settings import Settings
from bot.store.models import Job, Origin, Subject


class FileDelivery:
    def __init__(self, log: Path, block: Path | None) -> None:
        self.log = log
        self.block = block

    async def deliver(self, job: Job) -> None:
        if self.block is not None and self.block.exists():
            raise RuntimeError("deliveries are blocked")
        # Check before posting, as a receiver without an idempotency key requires.
        if self.log.exists() and any(json.loads(line)["job_id"] == job.id
                                     for line in self.log.read_text().splitlines()):
            return
        with self.log.open("a") as f:
            f.write(json.dumps({"job_id": job.id, "state": job.state.value,
                                "images": [o.sha256 for o in job.outputs]}) + "\n")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=Path, required=True)
    parser.add_argument("--create", type=int, default=0)
    parser.add_argument("--block", type=Path)
    parser.add_argument("--provider", default="fal", help="the provider the created jobs are sent to")
    parser.add_argument("--drain", action="store_true", help="SIGTERM drains, then the process exits 0")
    args = parser.parse_args()
    stop = asyncio.Event()
    if args.drain:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    settings = Settings()
    delivery = FileDelivery(args.deliveries, args.block)
    config = RunnerConfig(origins=frozenset({Origin.DISCORD}), adopt=True)
    async with open_app(settings, deliverers={"discord": delivery}, config=config) as app:
        for i in range(args.create):
            job = await app.runner.create(Subject.member(1, 100 + i), Origin.DISCORD,
                                          ImagineRequest(prompt=f"job {i}"), provider=args.provider)
            print(f"CREATED {job.id}", flush=True)
        print("READY", flush=True)
        await stop.wait()
        assert app.drain is not None
        await app.drain.run()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(130)
