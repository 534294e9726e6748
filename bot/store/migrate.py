"""Numbered schema migrations, one folder of SQL files per store (bot/store/migrations/<store>/NNNN_name.sql),
and what every store's migration runner decides the same way: which files to apply, and that a database written
by a newer Atelier is refused. How a file is run (transactions, where the version is kept) is the store's own."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from bot.errors import ConfigError

_MIGRATIONS_PACKAGE = "bot.store.migrations"
_MIGRATION_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


@functools.cache
def load_migrations(store: str = "sqlite") -> tuple[Migration, ...]:
    """The numbered SQL files shipped for this store, in order. They must run 0001, 0002, ... without gaps, so
    that a file added on two branches with the same number fails loudly here."""
    root = resources.files(_MIGRATIONS_PACKAGE)
    stray = sorted(e.name for e in root.iterdir() if _MIGRATION_FILE.match(e.name))
    if stray:
        # A file left beside the folders (a branch from before they existed) would never run: say so.
        raise RuntimeError(f"migration files belong in bot/store/migrations/<store>/, not beside them: {stray}")
    found = []
    for entry in root.joinpath(store).iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration files must be numbered 0001, 0002, ... without gaps or repeats; "
                           f"found {[m.name for m in found]}")
    return tuple(found)


def to_apply(migrations: Sequence[Migration], *, current: int, up_to: int | None, label: str) -> list[Migration]:
    """The migrations that bring a database at schema `current` up to `up_to` (default: the newest), in order.
    Raises ConfigError for a database written by a newer Atelier."""
    newest = migrations[-1].version
    if current > newest:
        raise ConfigError(
            f"The database at {label} was written by a newer Atelier (schema {current}; this one knows up to "
            f"{newest}). Upgrade Atelier or point DATABASE_URL elsewhere.")
    target = newest if up_to is None else min(up_to, newest)
    return [m for m in migrations if current < m.version <= target]
