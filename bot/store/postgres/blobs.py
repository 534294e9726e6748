"""Job images in PostgreSQL, where every process on every host can read them: content-addressed (one row per
distinct image, however many jobs use it), and pruned by retention like the files of the local store: a row goes
when no job that retention keeps refers to it (the store's blobs_in_use) and it was not written lately."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import PurePath, PurePosixPath

from bot.store.postgres.store import PostgresJobStore

_HEX = frozenset("0123456789abcdef")


def _checked(sha256: str) -> str:
    if len(sha256) != 64 or not set(sha256) <= _HEX:
        raise ValueError("not a sha256 hex digest")
    return sha256


class PostgresBlobs:
    def __init__(self, store: PostgresJobStore) -> None:
        self._store = store

    async def put(self, data: bytes) -> tuple[str, PurePath]:
        digest = hashlib.sha256(data).hexdigest()
        # Written again: marked fresh, so a prune racing with a job whose row is not committed yet keeps it.
        await self._store._count(
            "INSERT INTO blobs (sha256, data, size) VALUES (%s, %s, %s)"
            " ON CONFLICT (sha256) DO UPDATE SET written_at = now()", (digest, data, len(data)))
        return digest, PurePosixPath("postgresql", "blobs", digest)

    async def get(self, sha256: str) -> bytes:
        row = await self._store._one("SELECT data FROM blobs WHERE sha256 = %s", (_checked(sha256),))
        if row is None:
            raise FileNotFoundError(f"image {sha256} is no longer kept")
        return bytes(row["data"])

    async def delete(self, sha256: str) -> None:
        await self._store._count("DELETE FROM blobs WHERE sha256 = %s", (_checked(sha256),))

    async def delete_unless_written_since(self, sha256: str, since: datetime) -> bool:
        return await self._store._count("DELETE FROM blobs WHERE sha256 = %s AND written_at < %s",
                                        (_checked(sha256), since)) == 1
