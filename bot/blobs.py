"""Content-addressed files for job inputs and outputs, so a retry a day later still has its images."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from pathlib import Path


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
