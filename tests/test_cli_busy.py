"""The real `atelier` process while another real process holds the SQLite file's write lock (BEGIN EXCLUSIVE)
for longer than the busy timeout, and Ctrl-C while the command waits on the database or a slow download."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes.base import JobScript
from tests.fakes.fal import FakeFal
from tests.test_cli import ATELIER, SAMPLE, atelier, clean_env, fal  # noqa: F401 - fal is a fixture

ROOT = Path(__file__).resolve().parents[1]


@asynccontextmanager
async def locked(db: Path, seconds: float) -> AsyncIterator[asyncio.subprocess.Process]:
    """Another program holds the database's write lock for `seconds` (from when this yields)."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "tests.harness.db_locker", str(db), str(seconds),
                                                cwd=ROOT, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    assert (await asyncio.wait_for(proc.stdout.readline(), 20)).strip() == b"LOCKED"
    try:
        yield proc
    finally:
        if proc.returncode is None:
            await asyncio.wait_for(proc.communicate(), seconds + 20)


async def interrupted_when(condition: object, *args: str, cwd: Path, env: dict[str, str],
                           ) -> tuple[int, dict[str, Any] | None, str, float]:
    """Run `atelier ARGS`, send it SIGINT once `condition()` holds (it is then waiting on what the test set up),
    and return its exit code, JSON line, stderr and how long it took to exit after the signal."""
    proc = await asyncio.create_subprocess_exec(ATELIER, *args, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    await until(condition, "the command to be waiting")
    signalled = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    lines = out.decode().strip().splitlines()
    assert len(lines) <= 1, lines
    assert proc.returncode is not None
    return proc.returncode, json.loads(lines[0]) if lines else None, err.decode(), time.monotonic() - signalled


async def until(condition: object, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_running_paid_job_outlives_a_lock_longer_than_the_busy_timeout(
        tmp_path: Path, fal: FakeFal) -> None:  # noqa: F811
    # Before: SQLite's 10 s busy timeout ran out, the job failed as "an internal error stopped this job" and the
    # process printed a `database is locked` traceback. The lock here outlasts both that and DATABASE_BUSY_TIMEOUT_S.
    fal.script = JobScript(duration_s=3.0)
    env = clean_env(FAL_KEY=fal.key, FAL_QUEUE_URL=fal.base_url, DATABASE_BUSY_TIMEOUT_S="1")
    run = asyncio.ensure_future(atelier("job", "imagine", "--prompt", "x", cwd=tmp_path, env=env, timeout=90))
    await until(lambda: fal.calls("GET", "/status"), "the job at fal")
    async with locked(tmp_path / "data" / "atelier.db", 11.0):
        locked_at = time.monotonic()
        await asyncio.sleep(0.5)
        assert not run.done()
    code, result, err = await run
    assert code == 0, (result, err)
    assert result is not None and result["state"] == "succeeded" and len(result["files"]) == 1
    # (The lock was taken a moment before this process read "LOCKED": hence 10, not 11.)
    assert time.monotonic() - locked_at >= 10.0 and "Traceback" not in err
    assert len(fal.calls("POST")) == 1  # paid once


async def test_new_commands_during_a_long_lock_are_refused_as_busy_in_one_line(tmp_path: Path) -> None:
    env = clean_env(DATABASE_BUSY_TIMEOUT_S="1")
    code, _, _ = await atelier("job", "filter", "--image", str(SAMPLE), "--name", "noir", cwd=tmp_path, env=env)
    assert code == 0  # the database exists
    async with locked(tmp_path / "data" / "atelier.db", 12.0):
        started = time.monotonic()
        code, result, err = await atelier("job", "filter", "--image", str(SAMPLE), "--name", "noir", "--user", "x",
                                          cwd=tmp_path, env=env)
        assert code == 2 and result is not None and result["job_id"] is None
        assert "database is busy" in result["error"] and "Nothing was changed" in result["error"]
        assert "Traceback" not in err and time.monotonic() - started < 5
        proc = await asyncio.create_subprocess_exec(ATELIER, "quota", "x", "--daily", "3", cwd=tmp_path, env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, errb = await proc.communicate()
        assert proc.returncode == 2 and out == b""
        assert errb.decode().count("\n") == 1 and "database is busy" in errb.decode()
    # Once the lock is gone nothing is left behind: the refused job was never recorded, the quota never set.
    proc = await asyncio.create_subprocess_exec(ATELIER, "quota", "x", cwd=tmp_path, env=env,
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert "0 of 25 images used today" in out.decode()


async def test_ctrl_c_while_the_database_is_locked_exits_130_at_once(tmp_path: Path) -> None:
    env = clean_env()  # the default busy timeout: 30 s
    code, _, _ = await atelier("job", "filter", "--image", str(SAMPLE), "--name", "noir", cwd=tmp_path, env=env)
    assert code == 0
    async with locked(tmp_path / "data" / "atelier.db", 20.0):
        started = time.monotonic()
        # Well past start-up (about a second), the command is waiting for the lock to record its job.
        code, result, err, after = await interrupted_when(lambda: time.monotonic() - started > 4.0, "job", "filter",
                                                          "--image", str(SAMPLE), "--name", "noir", cwd=tmp_path,
                                                          env=env)
        assert code == 130, (result, err)
        assert after < 2.5  # before: it waited out the lock (or SQLite's 10 s), then printed a traceback
        assert result is not None and result["state"] == "cancelled" and result["job_id"] is None
        assert "Traceback" not in err


async def test_ctrl_c_while_an_input_is_downloading_exits_130_at_once(tmp_path: Path) -> None:
    asked = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        asked.set()
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        await response.prepare(request)
        for _ in range(600):  # a byte every 0.1 s: a minute for a tiny image
            await response.write(b"\\0")
            await asyncio.sleep(0.1)
        return response

    app = web.Application()
    app.router.add_get("/photo.png", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        code, result, err, after = await interrupted_when(asked.is_set, "job", "filter", "--image",
                                                          f"http://127.0.0.1:{port}/photo.png", "--name", "noir",
                                                          cwd=tmp_path, env=clean_env())
        assert code == 130, (result, err)
        assert after < 2.5  # before: the download ran on for a minute, then "not an image", exit 2
        assert result is not None and result["state"] == "cancelled" and "Traceback" not in err
    finally:
        await runner.cleanup()


async def test_a_lock_outlasting_the_jobs_deadline_still_ends_in_one_json_line(tmp_path: Path, fal: FakeFal) -> None:  # noqa: F811
    fal.script = JobScript(duration_s=1.0)
    env = clean_env(FAL_KEY=fal.key, FAL_QUEUE_URL=fal.base_url, DATABASE_BUSY_TIMEOUT_S="1",
                    JOB_DEADLINES='{"imagine": 3}')
    run = asyncio.ensure_future(atelier("job", "imagine", "--prompt", "x", cwd=tmp_path, env=env, timeout=60))
    await until(lambda: fal.calls("GET", "/status"), "the job at fal")
    async with locked(tmp_path / "data" / "atelier.db", 10.0):
        code, result, err = await run
        assert code == 1, (result, err)
        assert result is not None and result["job_id"] == 1 and result["state"] == "failed"
        assert "database is busy" in result["error"]
    # Once the lock is gone, the next command settles the job the dead process left (it had finished at fal).
    proc = await asyncio.create_subprocess_exec(ATELIER, "jobs", "--json", cwd=tmp_path, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert json.loads(out.decode().splitlines()[0])["state"] == "succeeded"


async def test_ctrl_c_on_a_running_job_while_the_database_is_locked_cancels_at_fal_and_exits_130(
        tmp_path: Path, fal: FakeFal) -> None:  # noqa: F811
    fal.script = JobScript(outcome="never")
    env = clean_env(FAL_KEY=fal.key, FAL_QUEUE_URL=fal.base_url)  # the default busy timeout: 30 s
    proc = await asyncio.create_subprocess_exec(ATELIER, "job", "imagine", "--prompt", "x", cwd=tmp_path, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    await until(lambda: fal.calls("GET", "/status"), "the job at fal")
    async with locked(tmp_path / "data" / "atelier.db", 15.0):
        signalled = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 130, err
        assert time.monotonic() - signalled < 6.0  # not the lock's 15 s, nor the 30 s busy timeout
        (line,) = out.decode().splitlines()
        result = json.loads(line)
        assert result["state"] == "cancelled" and "database busy" in result["error"]
        assert len(fal.calls("PUT", "/cancel")) == 1  # stopped at the provider all the same
    # The row could not be written then; the next command settles it by looking at fal, which reports a cancelled
    # request as ended with "Request was cancelled": over, and charged nothing.
    proc = await asyncio.create_subprocess_exec(ATELIER, "jobs", "--json", cwd=tmp_path, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    listed = json.loads(out.decode().splitlines()[0])
    assert listed["state"] in ("cancelled", "failed") and "cancelled" in listed["error"], listed
    assert listed["images_charged"] == 0
