"""Which way the imports go: the engine knows no Discord, and the Discord bot module imports no cog (the cogs
import it), so there is no cycle between bot/discord_bot.py and cogs/."""

from __future__ import annotations

import subprocess
import sys


def imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(out.split())


def test_the_engine_imports_no_discord() -> None:
    modules = imported_after("import bot.app, bot.engine, bot.jobs, bot.runner, bot.store, bot.cli")
    assert not {m for m in modules if m == "discord" or m.startswith(("discord.", "cogs"))}


def test_the_bot_module_imports_no_cog() -> None:
    modules = imported_after("import bot.discord_bot")
    assert "discord" in modules
    assert not {m for m in modules if m == "cogs" or m.startswith("cogs.")}
