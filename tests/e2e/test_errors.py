"""One error handler for everything a member triggers: an unexpected failure is logged with its traceback under a
short reference, and the member gets a private answer naming that reference instead of "thinking…" forever."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime

import pytest

from tests.e2e.conftest import E2E

pytestmark = pytest.mark.asyncio(loop_scope="session")

REFERENCE = re.compile(r"reference `([0-9A-F]{6})`")


async def test_an_admin_command_that_raises_answers_privately_with_a_reference_and_logs_the_traceback(
        e2e: E2E) -> None:
    admin, onlooker = await e2e.member("admin", manage_guild=True), await e2e.member("onlooker")
    # A setting of the wrong shape (a hand-edited row, a bug in an older version): /atelier providers fails on it.
    with sqlite3.connect(e2e.db.path) as db:
        db.execute("INSERT OR REPLACE INTO guild_settings (guild_id, key, value_json, updated_at) VALUES (?, ?, ?, ?)",
                   (str(e2e.guild.id), "provider_order", "5", datetime.now(UTC).isoformat()))
    try:
        run = await admin.run_command(e2e.channel, "atelier providers", operation="imagine", order="novita")
        assert await run.acked() < 3.0
        reply = await run.reply()
    finally:
        with sqlite3.connect(e2e.db.path) as db:
            db.execute("DELETE FROM guild_settings WHERE guild_id = ? AND key = 'provider_order'", (str(e2e.guild.id),))
    assert reply.ephemeral and admin.can_see(reply) and not onlooker.can_see(reply)
    match = REFERENCE.search(reply.content)
    assert match is not None, reply.content
    assert "Traceback" not in reply.content and "TypeError" not in reply.content
    log = await e2e.discord.wait_for(lambda: match[1] in e2e.bot.log_since(e2e.log_mark) and
                                     e2e.bot.log_since(e2e.log_mark), poll=0.1, what="the reference in the log")
    logged = log[log.index(f"unexpected error in /atelier providers (reference {match[1]})"):]
    assert "Traceback (most recent call last)" in logged and "TypeError" in logged
