"""Benchmark: interaction acknowledgement under a burst — N slash commands within one second against the fake
Discord, answered by the real bot process (`python -m bot`), with the provider fakes in their own process.

    uv run python -m bench.ack_burst [--commands 200] [--over 1.0] [--json out.json]

Each of N members runs /imagine once, the dispatches spread evenly over `--over` seconds. Reported: the time from
the fake Discord sending INTERACTION_CREATE to it receiving the deferred acknowledgement (p50/p95/p99/max), how many
missed Discord's 3 s deadline, and how long until every job's result was posted. Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, emit, machine, pct, print_fields
from tests.e2e.harness import BotProcess, ProviderFakes
from tests.fakes.discord import FakeDiscord


async def run(commands: int, over: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        providers = ProviderFakes(workdir)
        providers.start()
        fake = FakeDiscord()
        await fake.start()
        bot: BotProcess | None = None
        try:
            for name in ("glam", "fal", "novita", "pixazo"):
                await providers.script(name, duration_s=2.0)
            guild = await fake.create_guild("Atelier bench")
            channel = await guild.create_channel("burst")
            members = [await guild.add_member(f"member-{i}") for i in range(commands)]
            home = workdir / "bot"
            home.mkdir()
            env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "PYTHONPATH": str(ROOT),
                   "DATABASE_URL": f"sqlite:///{home}/data/atelier.db", "DISCORD_GUILD_IDS": str(guild.id),
                   "PROVIDER_REQUESTS_PER_SECOND": "0", "NOVITA_MAX_PARALLEL": str(commands),
                   "FAL_MAX_PARALLEL": str(commands), "LOG_LEVEL": "INFO",  # READY is logged at INFO
                   **fake.bot_env(), **providers.env()}
            bot = BotProcess(home, env)
            await bot.start()
            await asyncio.sleep(2.5)  # discord.py's on_ready comes ~2 s after the last GUILD_CREATE

            t0 = time.monotonic()

            async def fire(i: int) -> Any:
                await asyncio.sleep(max(0.0, t0 + i * over / commands - time.monotonic()))
                return await members[i].run_command(channel, "imagine", prompt=f"burst {i}")

            runs = await asyncio.gather(*(fire(i) for i in range(commands)))
            fired_s = time.monotonic() - t0
            latencies, missed = [], 0
            for item in runs:
                try:
                    latencies.append(await item.acked())
                except AssertionError:
                    missed += 1
            results_s = None
            try:
                await fake.wait_for(lambda: sum(1 for m in channel.live() if m.attachments and not m.ephemeral)
                                    >= commands, timeout=120, poll=0.2, what="every result")
                results_s = round(time.monotonic() - t0, 1)
            except AssertionError:
                pass
        finally:
            if bot is not None:
                await bot.stop()
            await fake.stop()
            providers.stop()
    return {
        "benchmark": "ack_burst", "commands": commands, "over_s": over, "fired_in_s": round(fired_s, 2),
        "ack_p50_ms": round(pct(latencies, 50) * 1000, 1), "ack_p95_ms": round(pct(latencies, 95) * 1000, 1),
        "ack_p99_ms": round(pct(latencies, 99) * 1000, 1), "ack_max_ms": round(max(latencies) * 1000, 1),
        "missed_3s_deadline": missed, "all_results_posted_after_s": results_s, "machine": machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--over", type=float, default=1.0, help="seconds over which the commands arrive")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "ack_burst.json")
    args = parser.parse_args()
    result = asyncio.run(run(args.commands, args.over))
    print_fields(result)
    emit(result, args.json)


if __name__ == "__main__":
    main()
