"""The pieces of an end-to-end run: the provider fakes in their own process, the unmodified bot process
(`python -m bot`, as the README says) on its own SQLite file, `atelier worker` processes beside it, and read-only
looks into that file.

The fake Discord itself lives in the test process (tests/fakes/discord); conftest.py ties everything together.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
PROVIDERS = ("glam", "fal", "novita", "pixazo")
PROVIDER_KEY = "e2e-provider-key"


class ProviderFakes:
    """tests.fakes.serve in its own process; scripts, faults and stats over its /_admin/ endpoints."""

    def __init__(self, workdir: Path) -> None:
        self.log_path = workdir / "providers.log"
        self.urls: dict[str, str] = {}
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "HOME": str(self.log_path.parent)}
        with self.log_path.open("w") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "tests.fakes.serve", *PROVIDERS, "--key", PROVIDER_KEY],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the provider fakes did not start:\n{self.log_path.read_text()}")
        self.urls = json.loads(line)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def env(self) -> dict[str, str]:
        """The bot's settings for every provider, aimed at the fakes."""
        return {"GLAM_API_KEY": PROVIDER_KEY, "GLAM_BASE_URL": self.urls["glam"],
                "FAL_KEY": PROVIDER_KEY, "FAL_QUEUE_URL": self.urls["fal"],
                "PIXAZO_API_KEY": PROVIDER_KEY, "PIXAZO_BASE_URL": self.urls["pixazo"],
                "NOVITA_API_KEY": PROVIDER_KEY, "NOVITA_BASE_URL": self.urls["novita"],
                # These tests follow a job that sits at the provider (queued, polled, held): Novita's async GLM
                # path. Seedream's synchronous call is covered by tests/test_cli_novita.py and tests/runner.
                "NOVITA_MODEL": "glm-image"}

    async def _call(self, provider: str, method: str, path: str, body: Any = None) -> Any:
        async with aiohttp.ClientSession() as session, \
                session.request(method, f"{self.urls[provider]}{path}", json=body) as resp:
            if resp.content_type == "application/json":
                data = await resp.json()
            else:
                data = await resp.read()
            if resp.status != 200:
                raise AssertionError(f"{provider} {method} {path}: {resp.status} {data!r}")
            return data

    async def script(self, provider: str, **script: Any) -> None:
        """The JobScript each new job at this provider follows (tests/fakes/base.py)."""
        await self._call(provider, "POST", "/_admin/script", script)

    async def knobs(self, provider: str, **knobs: Any) -> None:
        await self._call(provider, "POST", "/_admin/knobs", knobs)

    async def fail_next(self, provider: str, status: int, body: Any = None, **match: Any) -> None:
        await self._call(provider, "POST", "/_admin/fail_next", {"status": status, "body": body, **match})

    async def clear_faults(self, provider: str) -> None:
        """Drop the provider's faults not yet used up (and any pending broken-JSON answers)."""
        await self._call(provider, "POST", "/_admin/clear_faults")

    async def request_log(self, provider: str, method: str | None = None,
                          path_contains: str = "") -> list[dict[str, Any]]:
        """The API requests the provider received, oldest first: {"method", "path", "query", "at", "status"}
        each, `at` on the fakes' own monotonic clock (compare them only with each other)."""
        log: list[dict[str, Any]] = await self._call(provider, "GET", "/_admin/requests")
        return [r for r in log if (method is None or r["method"] == method) and path_contains in r["path"]]

    async def hold(self, provider: str, *paths: str) -> None:
        await self._call(provider, "POST", "/_admin/hold", {"paths": list(paths)})

    async def release(self, provider: str) -> None:
        await self._call(provider, "POST", "/_admin/release")

    async def stats(self, provider: str) -> dict[str, Any]:
        return await self._call(provider, "GET", "/_admin/stats")  # type: ignore[no-any-return]

    async def requests(self) -> dict[str, int]:
        """How many API requests each provider has received so far."""
        return {name: (await self.stats(name))["requests"] for name in PROVIDERS}

    async def submitted(self, provider: str, remote_id: str) -> Any:
        """The body one of the provider's jobs was submitted with, as the fake recorded it."""
        return (await self._call(provider, "GET", f"/_admin/jobs/{remote_id}"))["body"]

    async def output_bytes(self, provider: str, remote_id: str) -> list[bytes]:
        """The images the provider made for one of its jobs, as it serves them."""
        job = (await self.stats(provider))["jobs"][remote_id]
        return [await self._call(provider, "GET", f"/_files/{name}") for name in job["outputs"]]


class BotProcess:
    """`python -m bot` in a working directory of its own (no stray .env), on its own SQLite file.

    Its output is copied to bot.log by a thread, so it is read whatever the test process is doing; the methods may
    be awaited from any event loop.
    """

    READY = "READY as"
    ARGS: tuple[str, ...] = ()  # after `python -m bot`: none is `atelier run`
    NAME = "bot"

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.log_path = workdir / f"{self.NAME}.log"
        self.starts = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._ready = threading.Event()
        # A command that execs the bot, e.g. ["prlimit", "--nofile=300:900", "--"] to start it with lower limits.
        self.wrapper: list[str] = []

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def start(self, timeout: float = 30.0, *, wait_ready: bool = True) -> None:
        """Start the bot and wait until it logs that it is READY (unless wait_ready=False: then see wait_ready())."""
        self.starts += 1
        with self.log_path.open("a") as log:
            log.write(f"----- {self.NAME} start #{self.starts} -----\n")
        self._ready = threading.Event()
        self.proc = subprocess.Popen([*self.wrapper, sys.executable, "-m", "bot", *self.ARGS], cwd=self.workdir,
                                     env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._read, args=(self.proc, self._ready), name=f"{self.NAME}-log",
                                        daemon=True)
        self._reader.start()
        if wait_ready:
            await self.wait_ready(timeout)

    async def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.proc is not None
        if not await asyncio.to_thread(self._wait_ready, self.proc, timeout):
            await self.kill()
            raise RuntimeError(f"the {self.NAME} did not get ready within {timeout} s:\n{self.log_tail()}")

    def _wait_ready(self, proc: subprocess.Popen[bytes], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if proc.poll() is not None or time.monotonic() > deadline:
                return False
        return True

    def _read(self, proc: subprocess.Popen[bytes], ready: threading.Event) -> None:
        assert proc.stdout is not None
        with self.log_path.open("a") as log:
            for line in proc.stdout:
                text = line.decode(errors="replace")
                log.write(text)
                log.flush()
                if self.READY in text:
                    ready.set()

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc else None

    async def wait_exit(self, timeout: float = 30.0) -> int:
        """The exit code, once the process has ended by itself (AssertionError if it has not within `timeout`)."""
        assert self.proc is not None
        try:
            code = await asyncio.to_thread(self.proc.wait, timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the {self.NAME} did not exit within {timeout:g} s:\n{self.log_tail()}") from None
        await self._reap()
        return code

    def pause(self) -> None:
        """SIGSTOP: frozen mid-step; its leases lapse while it sleeps (the process itself still exists)."""
        assert self.alive and self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT: carries on from where SIGSTOP froze it."""
        assert self.alive and self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    async def kill(self) -> None:
        """SIGKILL: the process gets no chance to tidy up."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
        await self._reap()

    async def stop(self) -> None:
        """SIGTERM, as an operator stops it; SIGKILL if it does not stop within 15 s."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGCONT)  # a paused process could not act on SIGTERM
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, 15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        await self._reap()

    async def restart(self) -> None:
        await self.kill()
        await self.start()

    async def _reap(self) -> None:
        if self.proc is not None:
            await asyncio.to_thread(self.proc.wait)
        if self._reader is not None:
            await asyncio.to_thread(self._reader.join, 10)
            self._reader = None

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, offset: int) -> str:
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def log_tail(self, chars: int = 20_000) -> str:
        text = self.log_since(0)
        return text[-chars:]


class WorkerProcess(BotProcess):
    """`python -m bot worker`: the same environment as the bot (database, token, Discord's address), no gateway."""

    READY = "worker ready as"
    ARGS = ("worker",)
    NAME = "worker"

    def __init__(self, workdir: Path, env: dict[str, str], *, number: int = 1) -> None:
        self.NAME = f"worker-{number}"
        super().__init__(workdir, env)


class Cluster:
    """Several Atelier processes on one database: a bot and any number of workers, each in a working directory of
    its own (no stray .env), all with the one environment `env` (DATABASE_URL among it)."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.bot = BotProcess(self._home("bot"), env)
        self.bots: list[BotProcess] = [self.bot]
        self.workers: list[WorkerProcess] = []

    def _home(self, name: str) -> Path:
        home = self.root / name
        home.mkdir(parents=True, exist_ok=True)
        return home

    def worker(self, *, env: dict[str, str] | None = None) -> WorkerProcess:
        """A new worker process, not started yet (`env`: instead of the cluster's, to start one misconfigured)."""
        number = len(self.workers) + 1
        worker = WorkerProcess(self._home(f"worker-{number}"), self.env if env is None else env, number=number)
        self.workers.append(worker)
        return worker

    def another_bot(self) -> BotProcess:
        """A further `atelier run` process (a sharded bot runs several), not started yet."""
        bot = BotProcess(self._home(f"bot-{len(self.bots) + 1}"), self.env)
        bot.NAME = f"bot-{len(self.bots) + 1}"
        self.bots.append(bot)
        return bot

    @property
    def processes(self) -> list[BotProcess]:
        return [*self.bots, *self.workers]

    async def stop(self) -> None:
        for process in self.processes:
            await process.stop()

    def logs(self, chars: int = 15_000) -> str:
        return "\n".join(f"===== {p.NAME} =====\n{p.log_tail(chars)}" for p in self.processes if p.starts)


class JobsDb:
    """Read-only looks into the bot's SQLite file, as an operator would with the sqlite3 shell."""

    JSON_COLUMNS = ("request", "handle", "outputs", "extra")

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10)
        db.row_factory = sqlite3.Row
        try:
            yield db
        finally:
            db.close()

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self._connect() as db:
            rows = [dict(r) for r in db.execute(sql, params)]
        for row in rows:
            for column in self.JSON_COLUMNS:
                if isinstance(row.get(column), str):
                    row[column] = json.loads(row[column])
        return rows

    def job(self, job_id: int) -> dict[str, Any] | None:
        found = self.rows("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return found[0] if found else None

    def posts(self, job_id: int, kind: str | None = None) -> list[dict[str, Any]]:
        """The job's Discord posts as the bot recorded them (each written before it is sent, with its nonce)."""
        rows = self.rows("SELECT * FROM discord_posts WHERE job_id = ? ORDER BY id", (job_id,))
        return [r for r in rows if kind is None or r["kind"] == kind]

    def jobs_of(self, user_id: int) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM jobs WHERE user_id = ? ORDER BY id", (str(user_id),))

    def images_charged(self, user_id: int) -> int:
        """What the member's jobs cost today against their quota (refunded jobs cost nothing)."""
        rows = self.rows("SELECT COALESCE(SUM(cost), 0) AS n FROM jobs WHERE user_id = ? AND refunded = 0 "
                         "AND created_at >= date('now')", (str(user_id),))
        return int(rows[0]["n"]) if rows else 0

    def unfinished(self) -> int:
        """Jobs not yet finished, plus finished jobs whose delivery is still owed."""
        rows = self.rows("SELECT (SELECT COUNT(*) FROM jobs WHERE state NOT IN ('succeeded', 'failed', 'cancelled'))"
                         " + (SELECT COUNT(*) FROM deliveries WHERE state != 'done') AS n")
        return int(rows[0]["n"]) if rows else 0


STARTED = re.compile(r"Started job #(\d+)")


def started_job(text: str) -> int:
    """The job number in the bot's private "Started job #N" answer."""
    match = STARTED.search(text)
    if match is None:
        raise AssertionError(f"not a started job: {text!r}")
    return int(match[1])
