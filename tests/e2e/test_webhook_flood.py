"""A thousand slow clients on the webhook port of the real bot process (`python -m bot`), whose file-descriptor
limit is lowered to 300 soft / 900 hard: before the listener had read timeouts, a connection cap and the raised
soft limit, such a flood used every descriptor and slash commands went unacknowledged. Now the soft limit is
raised to the hard one at start, the listener holds at most its cap, and commands are acknowledged throughout.

The clients connect to 127.0.0.1 only; there are 1,000 of them at most at any time, for about fifteen seconds."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import time
from pathlib import Path

import aiohttp

from tests.e2e.harness import ROOT, BotProcess
from tests.fakes.discord import FakeDiscord

CLIENTS = 1_000
FLOOD_S = 15.0
SOFT, HARD = 300, 900
CAP = 200
READ_TIMEOUT_S = 3.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except FileNotFoundError:
        return 0


def max_open_files(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no 'Max open files' line")


async def trickler(port: int, until: float, stats: dict[str, int]) -> None:
    """One slow client: sends a request line, then one header byte every half second; reconnects when cut off."""
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            stats["refused"] += 1
            await asyncio.sleep(0.5)
            continue
        stats["connections"] += 1
        try:
            writer.write(b"POST /webhooks/fal HTTP/1.1\r\nHost: bot\r\nX-Slow: ")
            while time.monotonic() < until and not reader.at_eof():
                writer.write(b"a")
                await writer.drain()
                try:
                    if await asyncio.wait_for(reader.read(1024), 0.5) == b"" or reader.at_eof():
                        break
                except TimeoutError:
                    continue
                break  # the server answered something (503): it is done with us
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
        stats["cut_off"] += 1
        await asyncio.sleep(0.2)


async def test_a_thousand_slow_webhook_clients_do_not_stop_slash_commands(tmp_path: Path) -> None:
    fake = FakeDiscord()
    await fake.start()
    bot: BotProcess | None = None
    try:
        guild = await fake.create_guild("Atelier flood")
        channel = await guild.create_channel("flood")
        members = [await guild.add_member(f"member-{i}") for i in range(12)]
        port = free_port()
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "PYTHONPATH": str(ROOT),
               "DATABASE_URL": f"sqlite:///{tmp_path}/data/atelier.db", "DISCORD_GUILD_IDS": str(guild.id),
               "WEBHOOK_PUBLIC_URL": f"http://127.0.0.1:{port}", "WEBHOOK_HOST": "127.0.0.1",
               "WEBHOOK_PORT": str(port), "WEBHOOK_MAX_CONNECTIONS": str(CAP),
               "WEBHOOK_READ_TIMEOUT_S": str(READ_TIMEOUT_S), "LOG_LEVEL": "INFO", **fake.bot_env()}
        bot = BotProcess(tmp_path, env)
        prlimit = shutil.which("prlimit")
        assert prlimit, "util-linux prlimit is needed to start the bot with a lower descriptor limit"
        bot.wrapper = [prlimit, f"--nofile={SOFT}:{HARD}", "--"]
        await bot.start()
        assert bot.pid is not None
        assert max_open_files(bot.pid) == (HARD, HARD), "the soft limit is raised to the hard one at start"
        await asyncio.sleep(2.5)  # discord.py's on_ready comes ~2 s after the last GUILD_CREATE

        stats = {"connections": 0, "refused": 0, "cut_off": 0}
        until = time.monotonic() + FLOOD_S
        clients = [asyncio.create_task(trickler(port, until, stats)) for _ in range(CLIENTS)]
        peak_fds = 0
        try:
            await asyncio.sleep(3.0)  # every client has connected at least once
            assert stats["connections"] >= CLIENTS
            acks: list[float] = []
            for member in members:
                run = await member.run_command(channel, "quota")
                acks.append(await run.acked())
                reply = await run.reply()
                assert reply.ephemeral and "of **25**" in reply.content, reply.content
                peak_fds = max(peak_fds, open_fds(bot.pid))
                await asyncio.sleep(0.5)
            async with aiohttp.ClientSession() as session, \
                    session.get(f"http://127.0.0.1:{port}/webhooks/health") as resp:
                assert resp.status in (200, 503)  # served, or politely turned away while at the cap
        finally:
            await asyncio.gather(*clients, return_exceptions=True)
        assert all(a < 3.0 for a in acks), acks
        assert peak_fds < HARD - 100, f"the bot held {peak_fds} descriptors"
        # Slow clients were cut off (read timeout) or turned away (cap) and came back many times.
        assert stats["cut_off"] > CLIENTS
        log = bot.log_since(0)
        assert "Too many open files" not in log and "Traceback" not in log, log[-5000:]
        assert "turned away" in log
        async with aiohttp.ClientSession() as session, \
                session.get(f"http://127.0.0.1:{port}/webhooks/health") as resp:
            assert resp.status == 200  # the flood is over: served again
    finally:
        if bot is not None:
            await bot.stop()
        await fake.stop()
