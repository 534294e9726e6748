"""`atelier forget USER`, the real command as a subprocess: without --yes and without a terminal it refuses (exit 2)
and changes nothing; with --yes the user's jobs keep counting, nameless, and their images are gone."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from pathlib import Path

from tests.conftest import png_bytes
from tests.test_cli import ATELIER, atelier, clean_env

PHOTO = png_bytes(180, 150, (90, 30, 200))


async def run(*args: str, cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(ATELIER, *args, cwd=cwd, env=clean_env(),
                                                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute(sql))


async def test_forget_needs_yes_without_a_terminal_then_forgets(tmp_path: Path) -> None:
    image = tmp_path / "photo.png"
    image.write_bytes(PHOTO)
    code, result, _ = await atelier("job", "filter", "--image", str(image), "--name", "noir", "--user", "dana",
                                    "--out", str(tmp_path / "o"), cwd=tmp_path, env=clean_env())
    assert code == 0 and result is not None
    db = tmp_path / "data" / "atelier.db"
    blob = tmp_path / "data" / "blobs"
    photo_sha = hashlib.sha256(PHOTO).hexdigest()
    assert rows(db, "SELECT COUNT(*) FROM jobs WHERE user_id = 'dana'") == [(1,)]

    code, out, err = await run("forget", "dana", cwd=tmp_path)
    assert code == 2 and "--yes" in err and out == ""
    assert rows(db, "SELECT COUNT(*) FROM jobs WHERE user_id = 'dana'") == [(1,)], "nothing changed"
    assert any(photo_sha in str(p) for p in blob.rglob("*")), "the input is kept"

    code, out, err = await run("forget", "dana", "--yes", cwd=tmp_path)
    assert code == 0, err
    assert "forgot dana: 1 job(s) anonymised" in out
    assert rows(db, "SELECT COUNT(*) FROM jobs WHERE user_id = 'dana'") == [(0,)]
    assert rows(db, "SELECT user_id, operation, request FROM jobs") == \
        [("forgotten", "filter", json.dumps({"operation": "filter"}, separators=(",", ":")))]
    assert not any(photo_sha in str(p) for p in blob.rglob("*")), "the input is deleted"
    assert not [p for p in blob.rglob("*") if p.is_file()], "so is the result: nobody else used them"

    # The usage report still has the job, under nobody's name.
    code, out, _ = await run("usage", "--since", "2000-01-01", "--csv", cwd=tmp_path)
    assert code == 0 and "dana" not in out and "forgotten" in out
