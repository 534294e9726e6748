"""The log formats: JSON is one object per line, names the job of the task that logs, and masks secrets; the text
format masks them too."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from bot.ops import logs
from bot.redaction import register_secret

SECRET = "sk-live-0123456789abcdefXYZ"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger with the handler configure() would install, writing to a buffer (the root logger is pytest's)."""
    register_secret(SECRET)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.JobFilter())
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger(f"atelier.test.{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_lines_in_a_jobs_task_name_the_job_and_others_do_not(
        captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured

    async def job_task() -> None:
        logs.set_job(7, "fal", "guild:123456789012345678")
        logger.info("polling")
        await asyncio.sleep(0)
        logger.warning("still polling")

    async def cli_task() -> None:
        logs.set_job(8, "local", "cli")
        logger.info("filtering")

    logger.info("before")
    await asyncio.gather(job_task(), cli_task())
    logger.info("after")  # the tasks' context never leaks into their parent
    by_message = {str(e["message"]): e for e in lines(stream)}
    assert set(by_message["polling"]) == {"ts", "level", "logger", "message", "job_id", "provider", "guild"}
    assert (by_message["still polling"]["job_id"], by_message["still polling"]["provider"],
            by_message["still polling"]["guild"]) == (7, "fal", "123456789012345678")
    assert (by_message["filtering"]["job_id"], by_message["filtering"]["guild"]) == (8, None)
    assert "job_id" not in by_message["before"] and "job_id" not in by_message["after"]
    assert by_message["still polling"]["level"] == "WARNING"


def test_a_traceback_stays_on_its_line_and_a_key_is_masked_everywhere(
        captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    try:
        raise RuntimeError(f"provider said: Authorization: Key {SECRET}")
    except RuntimeError:
        logger.exception("call failed with %s", SECRET)
    text = stream.getvalue()
    assert text.count("\n") == 1 and SECRET not in text
    (entry,) = lines(stream)
    assert entry["message"] == "call failed with ***"
    assert "RuntimeError" in str(entry["exc"]) and "***" in str(entry["exc"])


def test_the_text_format_masks_keys_too() -> None:
    register_secret(SECRET)
    formatter = logs.RedactingFormatter(logs.TEXT_FORMAT)
    record = logging.LogRecord("bot.x", logging.WARNING, __file__, 1, "echoed %s", (SECRET,), None)
    assert SECRET not in formatter.format(record) and "echoed ***" in formatter.format(record)


def test_configure_leaves_a_root_logger_someone_else_set_up_alone() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    assert before, "pytest gives the root logger its capture handlers"
    logs.configure("DEBUG", "json", stream=io.StringIO())
    assert root.handlers == before
