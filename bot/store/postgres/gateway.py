"""What the bot processes on one database coordinate to share Discord's gateway: ranges of shards, IDENTIFY
turns, and publishing the slash commands once (bot.shards, bot.command_sync)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from bot.store.postgres.base import PgBase
from bot.store.postgres.locks import COMMANDS_CLASS, SHARDS_CLASS, key
from bot.store.postgres.presence import PROCESS_ALIVE, Presence


class PgGateway(PgBase):
    _presence: Presence | None

    def _process_id(self) -> int:
        if self._presence is None or self._presence.process_id is None:
            raise RuntimeError("claiming shards needs this process registered first (store.join)")
        return self._presence.process_id

    async def claim_shards(self, shard_count: int, ranges: Sequence[Sequence[int]]) -> tuple[int, ...] | None:
        """The first of `ranges` (of `shard_count` shards) that no live process serves, now claimed by this one;
        the range it already holds, if any; None when every range is served."""
        me = self._process_id()
        async with self._connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (SHARDS_CLASS, shard_count))
            mine = await (await conn.execute(
                "SELECT shard_ids FROM shard_claims WHERE shard_count = %s AND process_id = %s",
                (shard_count, me))).fetchone()
            if mine is not None:
                return tuple(mine["shard_ids"])
            # A range whose process died is free: the server dropped that process's liveness lock with it.
            await conn.execute(
                "DELETE FROM shard_claims c USING processes p WHERE c.process_id = p.id"  # noqa: S608 - constant SQL fragments
                f" AND c.shard_count = %s AND NOT {PROCESS_ALIVE}", (shard_count,))
            taken = {int(r["first_shard"]) for r in await (await conn.execute(
                "SELECT first_shard FROM shard_claims WHERE shard_count = %s", (shard_count,))).fetchall()}
            free = next((tuple(r) for r in ranges if r and r[0] not in taken), None)
            if free is None:
                return None
            await conn.execute(
                "INSERT INTO shard_claims (shard_count, first_shard, shard_ids, process_id) VALUES (%s, %s, %s, %s)",
                (shard_count, free[0], list(free), me))
            return free

    async def shard_claims(self) -> list[tuple[int, tuple[int, ...], str, bool]]:
        """(shard count, shard ids, owner, alive) for every claimed range: the operator's view of the gateway."""
        rows = await self._all(
            f"SELECT c.shard_count, c.shard_ids, p.owner, {PROCESS_ALIVE} AS alive"  # noqa: S608 - constant SQL fragments
            " FROM shard_claims c JOIN processes p ON p.id = c.process_id ORDER BY c.shard_count, c.first_shard")
        return [(int(r["shard_count"]), tuple(r["shard_ids"]), str(r["owner"]), bool(r["alive"])) for r in rows]

    async def take_identify_turn(self, bucket: int, interval_s: float) -> float:
        """0 when this process may IDENTIFY in `bucket` now (the turn is taken), else the seconds until the
        bucket's next turn. Times are the server's, so processes on hosts with skewed clocks agree."""
        async with self._connection() as conn, conn.transaction():
            taken = await (await conn.execute(
                "INSERT INTO identify_turns (bucket, last_at) VALUES (%(b)s, now()) ON CONFLICT (bucket) DO UPDATE"
                " SET last_at = now() WHERE identify_turns.last_at <= now() - %(s)s * interval '1 second'"
                " RETURNING bucket", {"b": bucket, "s": interval_s})).fetchone()
            if taken is not None:
                return 0.0
            row = await (await conn.execute(
                "SELECT EXTRACT(EPOCH FROM last_at + %(s)s * interval '1 second' - now()) AS wait"
                " FROM identify_turns WHERE bucket = %(b)s", {"b": bucket, "s": interval_s})).fetchone()
        return max(0.01, float(row["wait"])) if row is not None else 0.01

    async def sync_commands_once(self, scope: str, digest: str, publish: Callable[[], Awaitable[None]]) -> bool:
        """Run `publish()` unless the commands of `scope` were last published as `digest`; then record it. One
        process at a time per scope: the others wait, then find the digest recorded and skip. A process killed
        while publishing records nothing (its transaction rolls back), so the next start publishes."""
        async with self._connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (COMMANDS_CLASS, key(scope)))
            row = await (await conn.execute("SELECT digest FROM command_syncs WHERE scope = %s",
                                            (scope,))).fetchone()
            if row is not None and row["digest"] == digest:
                return False
            await publish()
            await conn.execute(
                "INSERT INTO command_syncs (scope, digest, synced_at) VALUES (%s, %s, now())"
                " ON CONFLICT (scope) DO UPDATE SET digest = excluded.digest, synced_at = excluded.synced_at",
                (scope, digest))
        return True
