"""The audit log's queue: a member's job never waits for it, a full queue drops with a log line, a failing post is
logged and the next line still goes out; and in SimCord, an audit channel that refuses every post breaks no job."""

# ruff: noqa: F811 - the fixtures are imported from test_bot and named again as parameters
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

import bot.discord_audit
from bot.app import App
from bot.discord_audit import QUEUE_SIZE, AuditLog
from tests.discord.conftest import World
from tests.discord.test_bot import (  # noqa: F401 - fixtures
    admin,
    app,
    atelier,
    fal,
    glam,
    late_wait,
    simcord_bot,
    wait_for_result,
)


async def test_a_stuck_audit_channel_never_blocks_and_a_full_queue_drops_with_a_log_line(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bot.discord_audit, "GAP_S", 0.0)
    release = asyncio.Event()
    posted: list[str] = []

    async def send(channel_id: int, text: str) -> None:
        await release.wait()
        if text == "boom":
            raise RuntimeError("Discord said no")
        posted.append(text)

    async def channel_of(guild_id: int) -> int | None:
        return 42

    audit = AuditLog(send, channel_of)
    audit.start()
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="bot.discord_audit"):
        audit.note(1, "boom")
        for n in range(QUEUE_SIZE + 10):
            audit.note(1, f"line {n}")
        assert time.monotonic() - started < 0.5  # never waited on the stuck channel
        assert audit.dropped >= 10 and "audit log queue full" in caplog.text
        release.set()
        for _ in range(200):
            if len(posted) >= QUEUE_SIZE - 1:
                break
            await asyncio.sleep(0.01)
    assert posted[0] == "line 0" and "not posted: Discord said no" in caplog.text
    await audit.close()


async def test_an_audit_channel_that_refuses_every_post_breaks_no_job(atelier: World, admin: Any, app: App) -> None:
    audit = atelier.guild.create_text_channel("audit")
    atelier.env.inject_error("POST", f"/channels/{audit.id}/messages", status=403, code=50013,
                             message="Missing Permissions", times=None)
    await admin.slash(atelier.channel, "atelier auditlog", channel=audit)
    started = await atelier.alice.slash(atelier.channel, "imagine", prompt="a fox")
    assert started.response is not None and started.response.content.startswith("Started job #1")
    assert (await wait_for_result(atelier, 1)).attachments
    assert audit.history() == []
