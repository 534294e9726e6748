"""`atelier run` with a PROMPT_BLOCKLIST_FILE holding a bad entry refuses to start, naming the line."""

from __future__ import annotations

from pathlib import Path

from tests.test_cli import atelier, clean_env


async def test_a_slow_pattern_in_the_install_blocklist_stops_the_start_with_its_line(tmp_path: Path) -> None:
    listing = tmp_path / "blocklist.txt"
    listing.write_text("# words for every server\nnude\nre:(a+)+$\n", encoding="utf-8")
    code, _, err = await atelier("run", cwd=tmp_path, env=clean_env(
        DISCORD_TOKEN="token", DISCORD_API_BASE="http://127.0.0.1:9/api/v10", PROMPT_BLOCKLIST_FILE=str(listing)))
    assert code == 2
    assert f"PROMPT_BLOCKLIST_FILE {listing}, line 3" in err and "too slow" in err and "Traceback" not in err
