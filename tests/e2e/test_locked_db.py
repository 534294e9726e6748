"""The real bot process while another program holds its SQLite file's write lock for longer than the busy timeout
(DATABASE_BUSY_TIMEOUT_S=2 here): a paid job already running waits it out and is posted; a new command is told
the bot is busy, privately, and nothing is recorded or charged."""

from __future__ import annotations

import time

from tests.e2e.conftest import E2E
from tests.e2e.harness import started_job
from tests.test_cli_busy import locked


async def test_a_lock_delays_a_running_job_and_a_new_command_is_told_the_bot_is_busy(e2e: E2E) -> None:
    await e2e.quiesce()
    await e2e.providers.script("novita", duration_s=2.0)
    alice = await e2e.member("alice")
    running = started_job((await (await alice.run_command(e2e.channel, "imagine", prompt="a kite")).reply()).content)
    await e2e.discord.wait_for(lambda: (row := e2e.db.job(running)) is not None and row["state"] != "pending",
                               what="the job at novita")
    async with locked(e2e.bot.workdir / "data" / "atelier.db", 8.0):
        started = time.monotonic()
        run = await alice.run_command(e2e.channel, "imagine", prompt="a second kite")
        assert await run.acked() < 3.0
        answer = await run.reply(timeout=10)
        assert answer.ephemeral and "database is busy" in answer.content and "try again" in answer.content
        assert time.monotonic() - started < 5.0  # the busy timeout, not the lock
        assert e2e.result_message(running) is None  # the running job waits for the lock ...
    result = await e2e.result(running)  # ... and is posted once it is gone
    assert len(result.attachments) == 1
    assert [job["id"] for job in e2e.db.jobs_of(alice.id)] == [running]
    assert e2e.db.images_charged(alice.id) == 1
