"""A guild's audit-log channel: one line per job, refusal, deleted result and settings change.

Nothing a member waits for may wait on it: lines go into a bounded queue (`note` never blocks and never raises) and
one tracked task posts them, one at a time and spaced out, so the audit log is the lowest priority of the bot's
Discord requests. A full queue drops the line with a log line; a post that fails is logged and forgotten. Lines
ping nobody (bot.discord_mentions.NOBODY), whatever a quoted prompt says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import discord

from bot.discord_mentions import NOBODY
from bot.discord_rest import Priority, rest_priority
from bot.tasks import TaskSet

log = logging.getLogger(__name__)

QUEUE_SIZE = 500
GAP_S = 0.5  # between two audit posts: member-facing requests get the rate-limit budget first
MAX_LINE = 1900
PROMPT_SHOWN = 300  # a prompt is quoted in the audit log up to this many characters
SETTING = "audit_channel"


def quote(text: str, limit: int = PROMPT_SHOWN) -> str:
    """A member's text shown in a line: cut, on one line, markdown and mentions made inert (and NOBODY pings)."""
    text = " ".join(text.split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return "“" + discord.utils.escape_mentions(discord.utils.escape_markdown(text)) + "”"


class AuditLog:
    def __init__(self, send: Callable[[int, str], Awaitable[Any]],
                 channel_of: Callable[[int], Awaitable[int | None]]) -> None:
        """`send(channel_id, text)` posts; `channel_of(guild_id)` is the guild's audit channel, or None."""
        self._send = send
        self._channel_of = channel_of
        self._queue: asyncio.Queue[tuple[int, int | None, str]] = asyncio.Queue(maxsize=QUEUE_SIZE)
        self._tasks = TaskSet("audit")
        self._drainer: asyncio.Task[None] | None = None
        self._open = False
        self.dropped = 0

    def start(self) -> None:
        """Lines are taken from now on (before, and after close, they are dropped: there is no bot to post them)."""
        self._open = True

    def note(self, guild_id: int | None, text: str, *, channel_id: int | None = None) -> None:
        """Queue one line for the guild's audit channel (if it has one; `channel_id`: that one, e.g. the channel
        being turned off). Never blocks, never raises."""
        if guild_id is None or not self._open:
            return
        try:
            self._queue.put_nowait((guild_id, channel_id, text[:MAX_LINE]))
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("audit log queue full: a line for guild %s was dropped (%d dropped so far)", guild_id,
                        self.dropped)
            return
        # One drainer at a time, alive only while there are lines: an idle bot has no audit task waiting.
        if self._drainer is None or self._drainer.done():
            self._drainer = self._tasks.spawn(self._drain(), name="drain")

    async def _drain(self) -> None:
        while not self._queue.empty():
            guild_id, channel_id, text = self._queue.get_nowait()
            try:
                # Looked up here, not by the caller: a member's job never waits for the settings read.
                channel_id = channel_id or await self._channel_of(guild_id)
                if channel_id is not None:
                    await self._send(channel_id, text)
                    if not self._queue.empty():
                        await asyncio.sleep(GAP_S)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("audit line for guild %s not posted: %s", guild_id, exc)
            finally:
                self._queue.task_done()

    async def close(self) -> None:
        self._open = False
        with contextlib.suppress(Exception):
            await self._tasks.close()
        self._drainer = None


def discord_sender(client: discord.Client) -> Callable[[int, str], Awaitable[Any]]:
    async def send(channel_id: int, text: str) -> None:
        # Its own level, whatever the task that queued the first line was doing (bot.discord_rest).
        with rest_priority(Priority.AUDIT):
            await client.get_partial_messageable(channel_id).send(text, allowed_mentions=NOBODY)
    return send
