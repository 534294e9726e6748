"""The advisory lock keys Atelier takes, as (class, key) pairs of 32-bit integers. The class keeps Atelier's
keys apart from any other program's locks in the same database."""

from __future__ import annotations

import zlib

# "Atel" in ASCII, and its neighbours: one class per kind of lock.
PROCESS_CLASS = 0x4174656C  # a live process: (PROCESS_CLASS, processes.id), held for the life of the process
MEMBER_CLASS = PROCESS_CLASS + 1  # a member's quota and member cap: the check and the insert it guards
SCOPE_CLASS = PROCESS_CLASS + 2  # a guild's spend caps (and the install's, with key 0)
SLOT_CLASS = PROCESS_CLASS + 3  # one provider's parallel slots
MIGRATION_LOCK = (PROCESS_CLASS + 4, 0)
SHARDS_CLASS = PROCESS_CLASS + 5  # claiming a range of gateway shards: (SHARDS_CLASS, shard count)
COMMANDS_CLASS = PROCESS_CLASS + 6  # publishing the slash commands of one scope: (COMMANDS_CLASS, key(scope))


def key(text: str) -> int:
    """A stable signed 32-bit key for a name (two names may share one: they then merely wait for each other)."""
    value = zlib.crc32(text.encode())
    return value - (1 << 32) if value >= 1 << 31 else value
