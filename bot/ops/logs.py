"""Logging set-up: readable lines (LOG_FORMAT=text) or one JSON object per line (LOG_FORMAT=json).

Every record about a job carries its id, provider and guild: the runner sets them in a context variable in the
job's own task (bot.jobs.core), so every line logged while that task runs, in any module, gets them. Messages and
tracebacks go through bot.redaction, as provider text does elsewhere: a key never reaches the log.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from bot.redaction import redact


@dataclass(frozen=True, slots=True)
class JobContext:
    job_id: int
    provider: str
    guild: str | None  # the Discord guild's id; None for a command-line job


JOB: ContextVar[JobContext | None] = ContextVar("atelier_job", default=None)


def set_job(job_id: int, provider: str, scope: str) -> None:
    """Name the job the current task works (scope is the job's subject scope: "guild:<id>" or "cli")."""
    JOB.set(JobContext(job_id, provider, scope.removeprefix("guild:") if scope.startswith("guild:") else None))


class JobFilter(logging.Filter):
    """Puts the current job (if any) on the record, for either format."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = JOB.get()
        record.job_id = job.job_id if job else None
        record.provider = job.provider if job else None
        record.guild = job.guild if job else None
        return True


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: ts, level, logger, message, job_id/provider/guild when about a job,
    and the traceback as `exc` (escaped newlines keep it on the line)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        job_id = getattr(record, "job_id", None)
        if job_id is not None:
            entry.update(job_id=job_id, provider=getattr(record, "provider", None),
                         guild=getattr(record, "guild", None))
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _AtelierHandler(logging.StreamHandler[IO[str]]):
    """The handler configure() installs (and replaces when called again)."""


def configure(level: str, fmt: str, *, stream: IO[str] | None = None) -> None:
    """The root logger's handler, on stderr. As logging.basicConfig does, it leaves a root logger that someone else
    already gave handlers (a test runner capturing logs) alone.

    discord.py narrates every connection step at INFO; Atelier's own log says what matters, so discord.py is kept
    at WARNING unless DEBUG is asked for."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if isinstance(h, _AtelierHandler)]
    if len(ours) == len(root.handlers) or not root.handlers:
        for old in ours:
            root.removeHandler(old)
        handler = _AtelierHandler(stream or sys.stderr)
        handler.addFilter(JobFilter())
        handler.setFormatter(JsonFormatter() if fmt == "json" else RedactingFormatter(TEXT_FORMAT))
        root.addHandler(handler)
        root.setLevel(level.upper())
        logging.captureWarnings(True)  # a library's warning is a log record too, in the same format
    if root.level > logging.DEBUG:
        logging.getLogger("discord").setLevel(logging.WARNING)
