"""Marks of models found retired: shared by every process on the file, told once, and gone when they expire."""

from __future__ import annotations

from datetime import timedelta

from bot.store import open_store
from bot.store.base import JobStore
from tests.store.helpers import NOW

HOUR = timedelta(hours=1)


async def test_the_first_mark_is_news_a_second_live_one_is_not(store: JobStore) -> None:
    assert await store.retired_until("novita", "glm-image", now=NOW) is None
    assert await store.mark_retired("novita", "glm-image", reason="HTTP 410", now=NOW, until=NOW + HOUR) is True
    assert await store.mark_retired("novita", "glm-image", reason="HTTP 410", now=NOW + timedelta(minutes=5),
                                    until=NOW + timedelta(minutes=65)) is False
    assert await store.retired_until("novita", "glm-image", now=NOW) == NOW + timedelta(minutes=65)
    # Another model of the same provider, and the same model name elsewhere, are not marked.
    assert await store.retired_until("novita", "seedream-5.0-lite", now=NOW) is None
    assert await store.retired_until("fal", "glm-image", now=NOW) is None


async def test_a_mark_expires_and_the_next_one_is_news_again(store: JobStore) -> None:
    await store.mark_retired("novita", "glm-image", reason="HTTP 404", now=NOW, until=NOW + HOUR)
    later = NOW + HOUR + timedelta(seconds=1)
    assert await store.retired_until("novita", "glm-image", now=later) is None
    assert await store.mark_retired("novita", "glm-image", reason="HTTP 404", now=later, until=later + HOUR) is True


async def test_another_process_on_the_same_file_sees_the_mark(store_url: str, store: JobStore) -> None:
    await store.mark_retired("novita", "glm-image", reason="HTTP 410", now=NOW, until=NOW + HOUR)
    other = await open_store(store_url)
    try:
        assert await other.retired_until("novita", "glm-image", now=NOW) == NOW + HOUR
        assert await other.mark_retired("novita", "glm-image", reason="x", now=NOW, until=NOW + HOUR) is False
    finally:
        await other.close()
