"""The slash commands as last published, per scope: published again only when what would be sent changed, and
not recorded when publishing failed (the next start tries again)."""

from __future__ import annotations

import pytest

from bot.store.base import JobStore


class Publisher:
    def __init__(self) -> None:
        self.calls = 0
        self.fail = False

    async def __call__(self) -> None:
        self.calls += 1
        if self.fail:
            raise RuntimeError("Discord answered 500")


async def test_a_scope_is_published_when_its_commands_change_and_only_then(store: JobStore) -> None:
    publish = Publisher()
    assert await store.sync_commands_once("guild:1", "aaa", publish) is True
    assert await store.sync_commands_once("guild:1", "aaa", publish) is False
    assert await store.sync_commands_once("guild:2", "aaa", publish) is True  # scopes apart
    assert await store.sync_commands_once("global", "aaa", publish) is True
    assert await store.sync_commands_once("guild:1", "bbb", publish) is True  # changed
    assert await store.sync_commands_once("guild:1", "bbb", publish) is False
    assert publish.calls == 4


async def test_a_failed_publish_is_not_recorded(store: JobStore) -> None:
    publish = Publisher()
    publish.fail = True
    with pytest.raises(RuntimeError):
        await store.sync_commands_once("guild:1", "aaa", publish)
    publish.fail = False
    assert await store.sync_commands_once("guild:1", "aaa", publish) is True
    assert publish.calls == 2
