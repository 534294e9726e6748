"""Content-addressed job images (inputs and outputs), so a retry a day later still has its images: files in a local
directory (BlobStore, beside an SQLite database), or rows in PostgreSQL (bot.store.postgres.blobs) where every
process on every host must read them. Both are `Blobs`."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import uuid
from datetime import datetime
from pathlib import Path, PurePath
from typing import Protocol


class Blobs(Protocol):
    async def put(self, data: bytes) -> tuple[str, PurePath]:
        """Keep the image (once per content); its sha256 and where it is kept."""

    async def get(self, sha256: str) -> bytes:
        """The image (FileNotFoundError when it is not kept)."""

    async def delete(self, sha256: str) -> None: ...

    async def delete_unless_written_since(self, sha256: str, since: datetime) -> bool:
        """Delete the image unless it was written (or written again by `put`) at or after `since`."""


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError("not a sha256 hex digest")
        return self.root / sha256[:2] / sha256

    async def put(self, data: bytes) -> tuple[str, Path]:
        digest = hashlib.sha256(data).hexdigest()
        path = self.path_for(digest)
        await asyncio.to_thread(self._write, path, data)
        return digest, path

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        if path.exists():
            # Already there (another job's identical image): mark it written now, so that a prune running
            # before our job's row is committed does not delete it (see delete_unless_written_since).
            with contextlib.suppress(FileNotFoundError):
                os.utime(path)
                return
        path.parent.mkdir(parents=True, exist_ok=True)
        # A name of its own: two jobs may store the same image at the same moment (identical outputs).
        tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(data)
        # The rename is atomic: a reader never sees half a file, even if we are killed mid-write.
        tmp.replace(path)

    async def get(self, sha256: str) -> bytes:
        return await asyncio.to_thread(self.path_for(sha256).read_bytes)

    async def delete(self, sha256: str) -> None:
        await asyncio.to_thread(self.path_for(sha256).unlink, missing_ok=True)

    async def delete_unless_written_since(self, sha256: str, since: datetime) -> bool:
        """Delete the blob unless it was written (or rewritten by `put`) at or after `since`. True if deleted.

        The store knows which jobs reference a blob only once their rows are committed; a job stores its images
        first. Keeping recently written blobs closes that gap for pruning."""
        return await asyncio.to_thread(self._delete_if_older, self.path_for(sha256), since.timestamp())

    @staticmethod
    def _delete_if_older(path: Path, since: float) -> bool:
        try:
            if path.stat().st_mtime >= since:
                return False
            path.unlink()
        except FileNotFoundError:
            return False
        return True
