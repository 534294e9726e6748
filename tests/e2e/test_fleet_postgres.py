"""One bot and two workers on one PostgreSQL database, each the real process, sharing the work: the bot hands every
new job to whichever process claims it first.

The bot and then a worker are SIGKILLed while jobs are waiting for a slot, queued and running at the providers and
finished but undelivered, spread over them; the survivors take the dead processes' jobs at once (the server
drops a dead process's liveness lock with its connection) and every job is delivered exactly once, none submitted
twice, every member charged once. Then a worker holding a running job is frozen (SIGSTOP) past its lease: another
process finishes and delivers the job; woken (SIGCONT), the frozen one writes nothing about it and posts nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.e2e.conftest import Fleet
from tests.e2e.harness import BotProcess
from tests.e2e.test_workers import (
    FAL_STATUS,
    GLAM_RESULT,
    MESSAGES,
    NOVITA_POLL,
    PHOTO,
    new_polled_job,
    provider_jobs,
    results_in,
    start,
    until,
)

pytestmark = [pytest.mark.asyncio(loop_scope="session"),
              pytest.mark.parametrize("database_url", ["postgres"], indirect=True)]


def rows(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """A look at the shared database, as an operator would take it."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def owner_pids(url: str) -> dict[int, int]:
    """Job id -> the pid of the process holding its lease (owners are "host:pid:nonce")."""
    return {r["id"]: int(r["lease_owner"].split(":")[-2])
            for r in rows(url, "SELECT id, lease_owner FROM jobs WHERE lease_owner IS NOT NULL")}


def holder_of(processes: list[BotProcess], pid: int) -> BotProcess:
    return next(p for p in processes if p.pid == pid)


async def test_bot_and_workers_on_postgres_survive_kills_and_a_frozen_worker(fleet: Fleet,
                                                                             database_url: str) -> None:
    discord, providers = fleet.discord, fleet.providers
    fleet.processes.env["LEASE_SECONDS"] = "4"  # the frozen worker's lease lapses within the test
    await fleet.bot.start()
    workers = [fleet.worker(), fleet.worker()]
    for worker in workers:
        await worker.start()
    everyone: list[BotProcess] = [fleet.bot, *workers]

    names = [f"{state}-{n}" for state in ("finished", "queued", "running", "glam", "waiting") for n in (1, 2)]
    members = {n: await fleet.member(n) for n in names}
    channels = {n: await fleet.guild.create_channel(f"job-{n}") for n in names}
    before = await provider_jobs(providers)

    # Finished, undelivered: each result post meets a 429 with 15 s to wait (a process that survives the kills
    # with one of them waits that out; the others are delivered by whoever takes them over).
    await providers.hold("novita", NOVITA_POLL)
    for n in (1, 2):
        await start(members[f"finished-{n}"], channels[f"finished-{n}"], "imagine", prompt=f"finished {n}")
    discord.rate_limit_next(2, route=MESSAGES, retry_after=15)
    await providers.release("novita")
    await discord.wait_for(lambda: sum(c.status == 429 for c in discord.calls("POST", MESSAGES)) >= 2,
                           timeout=30, what="both result posts to be rate-limited")
    # Queued at Novita, running at fal: each polled once, then their polls hang. Thirty polls to go (at most 0.3 s
    # apart) keep each job unfinished until its provider's polls are held, however slowly the next one starts.
    await providers.script("novita", queue_polls=30, running_polls=1)
    await providers.script("fal", queue_polls=0, running_polls=30)
    for n in (1, 2):
        known = (await provider_jobs(providers))["novita"]
        await start(members[f"queued-{n}"], channels[f"queued-{n}"], "imagine", prompt=f"queued {n}")
        await new_polled_job(providers, "novita", known)
    await providers.hold("novita", NOVITA_POLL)
    for n in (1, 2):
        known = (await provider_jobs(providers))["fal"]
        await start(members[f"running-{n}"], channels[f"running-{n}"], "edit", image=("room.png", PHOTO),
                    prompt=f"running {n}")
        await new_polled_job(providers, "fal", known)
    await providers.hold("fal", FAL_STATUS)
    # Glam takes two jobs at once across all processes: two hang there, two wait in line.
    await providers.hold("glam", GLAM_RESULT)
    for name in ("glam-1", "glam-2", "waiting-1", "waiting-2"):
        await start(members[name], channels[name], "filter", image=("me.png", PHOTO), name="real_sunset")
    await until(lambda: _at(providers, "glam", len(before["glam"]) + 2), what="two filter jobs at Glam")
    await asyncio.sleep(0.5)
    assert len((await provider_jobs(providers))["glam"]) == len(before["glam"]) + 2  # the cap holds globally

    # The work is spread: every job is held, by more than one process (which ones claim what is a race).
    held = owner_pids(database_url)
    assert len(held) == len(names)
    assert len(set(held.values())) >= 2 and set(held.values()) <= {p.pid for p in everyone}, held

    bot_pid = fleet.bot.pid
    await fleet.bot.kill()
    # The workers take the bot's jobs at once; then the one holding more dies too, with its own jobs and the bot's.
    await until(lambda: _none_held_by(database_url, bot_pid), what="the workers to take the bot's jobs", timeout=10)
    now_held = list(owner_pids(database_url).values())
    doomed = max(workers, key=lambda w: now_held.count(w.pid or -1))
    assert now_held.count(doomed.pid or -1) >= 1
    await doomed.kill()
    survivor = next(w for w in workers if w is not doomed)
    for name in ("novita", "fal", "glam"):
        await providers.release(name)
    await providers.script("novita", queue_polls=1, running_polls=1)
    await providers.script("fal", queue_polls=1, running_polls=1)
    for name, channel in channels.items():
        await discord.wait_for(lambda c=channel: results_in(discord, c), timeout=60, what=f"the {name} job's result")
    after = await provider_jobs(providers)
    assert {p: len(after[p]) - len(before[p]) for p in after} == {"novita": 4, "fal": 2, "glam": 4}
    for name, channel in channels.items():
        assert len(results_in(discord, channel)) == 1, f"the {name} job was delivered more than once"
    await fleet.bot.start()  # a new bot answers the members: each was charged once
    for name, member in members.items():
        run = await member.run_command(channels[name], "quota")
        assert "You have used **1** of **25** images today" in (await run.reply()).content, name

    # Frozen past its lease: the new bot and the survivor; the job goes to one of them, which is then frozen.
    frozen_member, frozen_channel = await fleet.member("frozen"), await fleet.guild.create_channel("job-frozen")
    await providers.script("fal", queue_polls=0, running_polls=50)
    known = (await provider_jobs(providers))["fal"]
    job_id = await start(frozen_member, frozen_channel, "edit", image=("room.png", PHOTO), prompt="frozen")
    remote_id = await new_polled_job(providers, "fal", known)
    await providers.hold("fal", FAL_STATUS)
    holder = holder_of([fleet.bot, survivor], owner_pids(database_url)[job_id])
    holder.pause()
    try:
        await providers.script("fal", queue_polls=0, running_polls=0)
        await providers.release("fal")
        await discord.wait_for(lambda: results_in(discord, frozen_channel), timeout=40,
                               what="another process to finish the frozen one's job")
        # The other process is done with it: delivery recorded, lease handed back.
        await until(lambda: _settled(database_url, job_id), timeout=20, what="the job's delivery to be recorded")
        finished = rows(database_url, "SELECT state, updated_at FROM jobs WHERE id = %s", (job_id,))[0]
        assert finished["state"] == "succeeded"
        asked = len(await providers.request_log("fal", path_contains=remote_id))
        holder_log = holder.log_size()
    finally:
        holder.resume()
    # Awake again, it carries on from where it froze (a poll's answer in hand, or a poll to retry): it finds the
    # job is no longer its own — at its first fenced write (and says so), or because the job already ended — and
    # writes and posts nothing. Give it a few seconds to do anything it would do, then look.
    with contextlib.suppress(AssertionError):
        await until(lambda: _woke(providers, remote_id, asked, holder, holder_log), timeout=10,
                    what="the thawed process to act on its job")
    await asyncio.sleep(2.0)
    assert rows(database_url, "SELECT state, updated_at FROM jobs WHERE id = %s", (job_id,))[0] == \
        {"state": "succeeded", "updated_at": finished["updated_at"]}
    assert len(results_in(discord, frozen_channel)) == 1
    final = await provider_jobs(providers)
    assert {p: len(final[p]) - len(after[p]) for p in final} == {"novita": 0, "fal": 1, "glam": 0}


async def _at(providers: Any, name: str, count: int) -> bool:
    return len((await providers.stats(name))["jobs"]) >= count


async def _none_held_by(url: str, pid: int | None) -> bool:
    return pid is None or pid not in owner_pids(url).values()


async def _settled(url: str, job_id: int) -> bool:
    return bool(rows(url, "SELECT 1 FROM jobs j JOIN deliveries d ON d.job_id = j.id WHERE j.id = %s"
                          " AND d.state = 'done' AND j.lease_owner IS NULL", (job_id,)))


async def _woke(providers: Any, remote_id: str, asked: int, holder: BotProcess, log_offset: int) -> bool:
    """The thawed process asked fal about the job again, or wrote about it in its log."""
    if "taken over by another process" in holder.log_since(log_offset):
        return True
    return len(await providers.request_log("fal", path_contains=remote_id)) > asked
