"""Command-line jobs whose `atelier` process was killed (SIGKILL, real processes) and `atelier job cancel`."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

from tests.fakes.base import JobScript
from tests.fakes.fal import FakeFal
from tests.test_cli import ATELIER, atelier, clean_env, fal  # noqa: F401 - fal is a fixture


async def start_job(tmp_path: Path, env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(ATELIER, "job", "imagine", "--prompt", "x", "--user", "kim", *args,
                                                cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)


async def until(condition: Any, what: str, timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def polled_jobs(server: FakeFal) -> int:
    return sum(1 for job in server.jobs.values() if job.polls > 0)


async def listed(tmp_path: Path, env: dict[str, str]) -> dict[int, dict[str, Any]]:
    proc = await asyncio.create_subprocess_exec(ATELIER, "jobs", "--user", "kim", "--json", cwd=tmp_path, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    return {row["job_id"]: row for row in map(json.loads, out.decode().splitlines())}


async def test_jobs_of_killed_processes_stop_holding_their_slots(tmp_path: Path, fal: FakeFal) -> None:  # noqa: F811
    env = clean_env(FAL_KEY=fal.key, FAL_QUEUE_URL=fal.base_url, QUOTA_CONCURRENT="3")
    # Two jobs that would never end, and one that finishes at fal just after its process is killed.
    fal.script = JobScript(outcome="never")
    procs = [await start_job(tmp_path, env), await start_job(tmp_path, env)]
    await until(lambda: polled_jobs(fal) == 2, "two jobs at fal")
    fal.script = JobScript(duration_s=1.5)
    procs.append(await start_job(tmp_path, env))
    await until(lambda: polled_jobs(fal) == 3, "the third job at fal")
    for proc in procs:
        proc.kill()
        await proc.communicate()
    await asyncio.sleep(1.6)  # the third job is done at fal by now

    fal.script = JobScript()
    code, result, err = await atelier("job", "imagine", "--prompt", "y", "--user", "kim", cwd=tmp_path, env=env)
    assert code == 0, (result, err)  # before: refused, "You already have 3 jobs running; ... or cancel one."
    assert result is not None and result["state"] == "succeeded"
    assert len(fal.calls("PUT", "/cancel")) == 2  # the two unfinished ones, cancelled at fal
    assert len(fal.calls("POST")) == 4  # nothing was sent again
    jobs = await listed(tmp_path, env)
    assert [jobs[i]["state"] for i in (1, 2, 3, 4)] == ["cancelled", "cancelled", "succeeded", "succeeded"]
    assert "`atelier job resume 3` writes its images" in err
    # The paid result of the third was kept: resume writes it.
    code, result, _ = await atelier("job", "resume", "3", "--out", str(tmp_path / "later"), cwd=tmp_path, env=env)
    assert code == 0 and result is not None and len(result["files"]) == 1
    # The cancelled ones cost nothing: two images charged today (jobs 3 and 4).
    proc = await asyncio.create_subprocess_exec(ATELIER, "quota", "kim", cwd=tmp_path, env=env,
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert "2 of 25 images used today" in out.decode() and "jobs in flight: 0 of 3" in out.decode()


async def test_job_cancel_stops_a_job_another_process_is_running(tmp_path: Path, fal: FakeFal) -> None:  # noqa: F811
    env = clean_env(FAL_KEY=fal.key, FAL_QUEUE_URL=fal.base_url)
    fal.script = JobScript(outcome="never")
    running = await start_job(tmp_path, env)
    await until(lambda: polled_jobs(fal) == 1, "the job at fal")

    code, result, err = await atelier("job", "cancel", "1", "--user", "kim", cwd=tmp_path, env=env)
    assert code == 0, err
    assert result is not None and result["job_id"] == 1 and result["state"] == "cancelled"
    assert result["provider"] == "fal" and result["error"] is None
    assert len(fal.calls("PUT", "/cancel")) == 1
    out, _ = await asyncio.wait_for(running.communicate(), 20)  # the process running it ends too
    assert running.returncode == 1 and json.loads(out.decode())["state"] == "cancelled"

    for args, message in ((["1", "--user", "kim"], "already cancelled"), (["1", "--user", "lee"], "no job 1"),
                          (["99"], "no command-line job 99")):
        code, result, err = await atelier("job", "cancel", *args, cwd=tmp_path, env=env)
        assert code == 2 and result is not None and message in result["error"] and "Traceback" not in err
    assert len(fal.calls("PUT", "/cancel")) == 1


async def test_a_suspended_process_keeps_its_job_though_its_lease_lapsed(tmp_path: Path, fal: FakeFal) -> None:  # noqa: F811
    import signal

    env = clean_env(FAL_KEY=fal.key, FAL_QUEUE_URL=fal.base_url, LEASE_SECONDS="1")
    fal.script = JobScript(outcome="never")
    proc = await start_job(tmp_path, env)
    await until(lambda: polled_jobs(fal) == 1, "the job at fal")
    proc.send_signal(signal.SIGSTOP)  # Ctrl-Z: alive, but renewing nothing
    try:
        await asyncio.sleep(2.0)
        jobs = await listed(tmp_path, env)
        assert jobs[1]["state"] in ("queued", "running") and fal.calls("PUT", "/cancel") == []
    finally:
        proc.send_signal(signal.SIGCONT)
    proc.send_signal(signal.SIGINT)
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 130 and json.loads(out.decode())["state"] == "cancelled"


async def test_several_commands_at_once_settle_each_abandoned_job_once(tmp_path: Path, fal: FakeFal) -> None:  # noqa: F811
    env = clean_env(FAL_KEY=fal.key, FAL_QUEUE_URL=fal.base_url)
    fal.script = JobScript(outcome="never")
    procs = [await start_job(tmp_path, env) for _ in range(3)]
    await until(lambda: polled_jobs(fal) == 3, "three jobs at fal")
    for proc in procs:
        proc.kill()
        await proc.communicate()

    async def run(*args: str) -> str:
        proc = await asyncio.create_subprocess_exec(ATELIER, *args, cwd=tmp_path, env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        assert proc.returncode == 0, err
        return err.decode()

    said = "".join(await asyncio.gather(run("jobs", "--all"), run("quota", "kim"), run("jobs", "--user", "kim"),
                                        run("quota", "nobody")))
    assert sorted(int(n) for n in re.findall(r"job (\d+), whose process had ended", said)) == [1, 2, 3]
    assert len(fal.calls("PUT", "/cancel")) == 3  # each job cancelled at fal once, by whichever command won it
    assert {row["state"] for row in (await listed(tmp_path, env)).values()} == {"cancelled"}
