"""Benchmark: memory under big images — N members each send a 36-megapixel image to /filter at the same moment,
answered by the real bot process (`python -m bot`) against the fake Discord, with the offline `local` provider.

    uv run python -m bench.memory_burst [--members 8] [--side 6000] [--format png|jpeg] [--json out.json]

Reported: the bot process's resident memory before the burst and its peak (VmHWM from /proc), how long until every
result was posted, and how many were. Target: eight members sending 36 MP images at once keep the peak under
1 GB. Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

from bench.common import ROOT, emit, machine, print_fields
from tests.e2e.harness import BotProcess
from tests.fakes.discord import FakeDiscord


def big_image(side: int, tint: int, fmt: str, grain: bool = False) -> bytes:
    """A side × side image (gradients in three channels), different per member; with `grain`, sensor-like noise
    on top, so that it compresses like a photo (and its result is too large to post without re-encoding)."""
    ramp = Image.linear_gradient("L").resize((side, side))
    img = Image.merge("RGB", (ramp, ramp.rotate(90), ramp.point(lambda v: (v + tint) % 256)))
    if grain:
        noise = Image.effect_noise((side, side), 24).convert("RGB")
        img = Image.blend(img, noise, 0.15)
    buf = io.BytesIO()
    img.save(buf, "PNG" if fmt == "png" else "JPEG", **({"quality": 85} if fmt == "jpeg" else {}))
    return buf.getvalue()


def rss_mb(pid: int, field: str) -> float:
    """VmRSS (now) or VmHWM (peak so far) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for {pid}")


async def run(members: int, side: int, fmt: str, extra_env: dict[str, str] | None = None,
              grain: bool = False) -> dict[str, Any]:
    images = [big_image(side, 37 * i, fmt, grain) for i in range(members)]
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "bot"
        home.mkdir()
        fake = FakeDiscord()
        await fake.start()
        bot: BotProcess | None = None
        try:
            guild = await fake.create_guild("Atelier memory bench")
            channel = await guild.create_channel("big-images")
            people = [await guild.add_member(f"member-{i}") for i in range(members)]
            env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "PYTHONPATH": str(ROOT),
                   "DATABASE_URL": f"sqlite:///{home}/data/atelier.db", "DISCORD_GUILD_IDS": str(guild.id),
                   "LOCAL_MAX_PARALLEL": str(members), "LOG_LEVEL": "INFO", **fake.bot_env(), **(extra_env or {})}
            bot = BotProcess(home, env)
            await bot.start()
            await asyncio.sleep(2.5)  # discord.py's on_ready comes ~2 s after the last GUILD_CREATE
            assert bot.pid is not None
            before = rss_mb(bot.pid, "VmRSS")
            t0 = time.monotonic()
            runs = await asyncio.gather(*(person.run_command(channel, "filter", image=(f"big-{i}.{fmt}", data),
                                                             name="noir")
                                          for i, (person, data) in enumerate(zip(people, images, strict=True))))
            for item in runs:
                await item.acked()
            with contextlib.suppress(AssertionError):  # reported below as fewer results posted
                await fake.wait_for(lambda: sum(1 for m in channel.live() if m.attachments and not m.ephemeral)
                                    >= members, timeout=300, poll=0.2, what="every result")
            posted = sum(1 for m in channel.live() if m.attachments and not m.ephemeral)
            elapsed = time.monotonic() - t0
            peak = rss_mb(bot.pid, "VmHWM")
        finally:
            if bot is not None:
                await bot.stop()
            await fake.stop()
    return {
        "benchmark": "memory_burst", "members": members, "image": f"{side}x{side} {fmt}" + (" grain" if grain else ""),
        "image_megapixels": round(side * side / 1e6, 1),
        "image_kb": round(sum(len(i) for i in images) / len(images) / 1024),
        "rss_before_mb": round(before), "rss_peak_mb": round(peak), "results_posted": posted,
        "all_posted_after_s": round(elapsed, 1), "target_peak_mb": 1024, "met": peak < 1024 and posted == members,
        "machine": machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--side", type=int, default=6000)
    parser.add_argument("--format", choices=("png", "jpeg"), default="png")
    parser.add_argument("--grain", action="store_true", help="photo-like noise: results must be re-encoded to post")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="an extra environment variable for the bot process (to compare settings)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "memory_burst.json")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    result = asyncio.run(run(args.members, args.side, args.format, extra, args.grain))
    print_fields(result)
    emit(result, args.json)


if __name__ == "__main__":
    main()
