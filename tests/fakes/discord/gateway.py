"""The fake's gateway websocket: HELLO, IDENTIFY -> READY + GUILD_CREATE, heartbeats, RESUME, member chunks, and
dispatches from tests, over as many shards as the bot connects.

Frames are text JSON: discord.py asks for zlib-stream compression but only decompresses binary frames, so plain
text works (discord.md §1.2, pitfall 2). Events are sent only where the session's intents ask for them, as on
Discord. While no session is connected, an INTERACTION_CREATE is lost (the member sees "The application did not
respond"); other events are kept for a session that RESUMEs, if resuming is allowed (`accept_resume`), and are
lost with the session otherwise, since a new session starts from a fresh READY.

Shards, as Discord runs them (discord.md §3): IDENTIFY carries `shard: [id, count]` (absent: [0, 1]) and the
gateway keeps one session per (id, count); a second IDENTIFY for the same shard replaces the first, whose socket is
closed with 4000, and an id outside [0, count) is closed with 4010. IDENTIFYs are rate limited per bucket
`id % max_concurrency`, one per `identify_interval_s`; one too soon is answered with op 9 (invalid session, not
resumable), on which discord.py waits and identifies again. READY and its GUILD_CREATEs list only the guilds of the
session's shard, `(guild_id >> 22) % count`. A dispatched event goes to the shard of its guild (`guild_id`, or `id`
for the GUILD_* events about the guild itself); one without a guild (a DM, a DM reaction) goes to shard 0. Sessions
whose count differs from the fake's `shard_count` may run side by side, as while a bot reshards, but to keep the
fake simple only sessions of the fake's count receive dispatched events.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from aiohttp import WSMsgType, web

from tests.fakes.discord.models import Intent

if TYPE_CHECKING:
    from tests.fakes.discord.control import FakeDiscord

log = logging.getLogger(__name__)

# Opcodes.
DISPATCH, HEARTBEAT, IDENTIFY, RESUME, REQUEST_MEMBERS, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 0, 1, 2, 6, 8, 9, 10, 11
# Close code for "unknown error, reconnect and resume", what Discord sends when it drops a session.
UNKNOWN_ERROR = 4000
AUTHENTICATION_FAILED = 4004
INVALID_SHARD = 4010
# Events about a guild itself carry its id as `id`, not `guild_id`.
GUILD_ITSELF = frozenset({"GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE"})

ShardKey = tuple[int, int]  # (shard id, shard count)


def shard_of(guild_id: int, shard_count: int) -> int:
    """The shard Discord sends a guild's events to."""
    return (guild_id >> 22) % shard_count


@dataclass
class Session:
    id: str
    intents: int
    ws: web.WebSocketResponse | None
    shard_id: int = 0
    shard_count: int = 1
    seq: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)  # dispatches, for replay on RESUME
    pending: list[tuple[str, Any]] = field(default_factory=list)  # events that arrived while disconnected
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def key(self) -> ShardKey:
        return self.shard_id, self.shard_count

    @property
    def connected(self) -> bool:
        return self.ws is not None and not self.ws.closed


class IdentifyRecord(NamedTuple):
    """One IDENTIFY the gateway accepted."""

    at: float  # time.monotonic() on arrival
    shard_id: int
    shard_count: int


@dataclass
class ShardStats:
    """One shard id as the gateway saw it (sessions of any count for the identifies, the fake's count otherwise)."""

    identifies: int = 0
    identify_refused: int = 0
    identified_at: list[float] = field(default_factory=list)  # monotonic, accepted IDENTIFYs
    refused_at: list[float] = field(default_factory=list)  # monotonic, IDENTIFYs answered with op 9
    connected: bool = False  # a session of the fake's shard count has a live socket for this shard
    dispatched: int = 0  # dispatch() events routed to this shard (after the intents check)
    delivered: Counter[str] = field(default_factory=Counter)  # of those, sent live, by event name


@dataclass
class GatewayStats:
    connections: int = 0
    identifies: int = 0  # accepted ones
    identify_refused: int = 0  # IDENTIFYs too soon for their bucket, answered with op 9
    identify_log: list[IdentifyRecord] = field(default_factory=list)
    resumes_requested: int = 0
    resumes_accepted: int = 0
    invalid_sessions: int = 0  # RESUMEs refused
    heartbeats: int = 0
    member_requests: int = 0
    dispatched: int = 0
    lost: list[str] = field(default_factory=list)  # events nobody was connected to receive
    shards: dict[int, ShardStats] = field(default_factory=dict)

    def shard(self, shard_id: int) -> ShardStats:
        found = self.shards.get(shard_id)
        if found is None:
            found = self.shards[shard_id] = ShardStats()
        return found


class Gateway:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.stats = GatewayStats()
        self.accept_resume = False
        self.heartbeat_interval_ms = 41_250
        self._by_key: dict[ShardKey, Session] = {}
        self._bucket_identified: dict[int, float] = {}  # rate-limit bucket -> monotonic time of its last IDENTIFY
        self._sockets: set[web.WebSocketResponse] = set()
        self._open = asyncio.Event()  # cleared: new connections wait before HELLO (Discord unreachable)
        self._open.set()

    # --- what tests read ---------------------------------------------------------------------------------------

    @property
    def sessions(self) -> dict[int, Session]:
        """The sessions that receive events (those of the fake's shard count), by shard id."""
        count = self.fake.shard_count
        return {shard_id: s for (shard_id, c), s in list(self._by_key.items()) if c == count}

    @property
    def all_sessions(self) -> list[Session]:
        """Every session, of whatever shard count."""
        return list(self._by_key.values())

    @property
    def session(self) -> Session | None:
        """The session of shard 0, or the only session there is."""
        found = self.sessions.get(0)
        if found is None:
            every = self.all_sessions
            found = every[0] if len(every) == 1 else None
        return found

    @property
    def connected(self) -> bool:
        return self.session is not None and self.session.connected

    @property
    def connected_shards(self) -> set[int]:
        """Shard ids whose session (of the fake's shard count) has a live socket."""
        return {shard_id for shard_id, s in self.sessions.items() if s.connected}

    def identify_remaining(self) -> int:
        """What `session_start_limit.remaining` says: Discord allows 1,000 IDENTIFYs a day."""
        return max(0, 1000 - self.stats.identifies)

    def hold_connections(self) -> None:
        """New connections get no HELLO until release_connections(): the bot stays disconnected meanwhile."""
        self.fake.thread.call_soon(self._open.clear)

    def release_connections(self) -> None:
        self.fake.thread.call_soon(self._open.set)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/gateway", self._connect)

    # --- the connection ------------------------------------------------------------------------------------

    async def _connect(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        self._sockets.add(ws)
        self.stats.connections += 1
        self.fake.changed()  # a test may wait for the bot's sockets to be open (while connections are held)
        try:
            await self._open.wait()
            await ws.send_str(json.dumps({"op": HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}}))
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                payload = json.loads(msg.data)
                await self._on_op(ws, payload.get("op"), payload.get("d"))
                self.fake.changed()
        finally:
            self._sockets.discard(ws)
            for session in self.all_sessions:
                if session.ws is ws:
                    session.ws = None
            self._refresh_connected()
            self.fake.changed()
        return ws

    async def _on_op(self, ws: web.WebSocketResponse, op: int | None, data: Any) -> None:
        if op == HEARTBEAT:
            self.stats.heartbeats += 1
            await ws.send_str(json.dumps({"op": HEARTBEAT_ACK}))
        elif op == IDENTIFY:
            await self._identify(ws, data)
        elif op == RESUME:
            await self._resume(ws, data)
        elif op == REQUEST_MEMBERS:
            self.stats.member_requests += 1
            guild = self.fake.guilds.get(int(data["guild_id"]))
            if guild is not None:
                await self._send_to(ws, "GUILD_MEMBERS_CHUNK", {
                    "guild_id": str(guild.id), "members": [m.to_json() for m in guild.members.values()],
                    "chunk_index": 0, "chunk_count": 1, "not_found": [], "nonce": data.get("nonce")})
        elif op in (3, 4):  # presence and voice state updates: nothing to do
            return
        else:
            log.warning("fake discord gateway: unhandled op %s", op)

    async def _identify(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        if data.get("token") != self.fake.token:
            await ws.close(code=AUTHENTICATION_FAILED, message=b"Authentication failed.")
            return
        shard = data.get("shard") or [0, 1]
        if not (isinstance(shard, list) and len(shard) == 2 and all(type(n) is int for n in shard)
                and 0 <= shard[0] < shard[1]):
            await ws.close(code=INVALID_SHARD, message=b"Invalid shard.")
            return
        shard_id, shard_count = shard
        now = time.monotonic()
        stats = self.stats.shard(shard_id)
        bucket = shard_id % max(1, self.fake.max_concurrency)
        last = self._bucket_identified.get(bucket)
        if last is not None and now - last < self.fake.identify_interval_s:
            # Too soon for this bucket: Discord invalidates the attempt and the client identifies again later.
            self.stats.identify_refused += 1
            stats.identify_refused += 1
            stats.refused_at.append(now)
            await ws.send_str(json.dumps({"op": INVALID_SESSION, "d": False}))
            return
        self._bucket_identified[bucket] = now
        self.stats.identifies += 1
        self.stats.identify_log.append(IdentifyRecord(now, shard_id, shard_count))
        stats.identifies += 1
        stats.identified_at.append(now)
        session = Session(id=secrets.token_hex(16), intents=int(data.get("intents", 0)), ws=ws, shard_id=shard_id,
                          shard_count=shard_count)
        old = self._by_key.get(session.key)
        self._by_key[session.key] = session
        self._refresh_connected()
        if old is not None and old.ws is not None and old.ws is not ws:
            await old.ws.close(code=UNKNOWN_ERROR)
        bot = self.fake.bot
        guilds = [g for g in list(self.fake.guilds.values())
                  if bot.id in g.members and shard_of(g.id, shard_count) == shard_id]
        await self._send(session, "READY", {
            "v": 10, "user": bot.to_json(), "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.id, "resume_gateway_url": self.fake.gateway_url, "shard": [shard_id, shard_count],
            "application": {"id": str(self.fake.application_id), "flags": 0}, "private_channels": [],
            "relationships": [], "user_settings": {}, "session_type": "normal", "geo_ordered_rtc_regions": []})
        for guild in guilds:
            await self._send(session, "GUILD_CREATE", guild.to_json(bot))

    async def _resume(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        self.stats.resumes_requested += 1
        session = next((s for s in self.all_sessions if s.id == data.get("session_id")), None)
        if not self.accept_resume or session is None or data.get("token") != self.fake.token or session.connected:
            # The session cannot be resumed: the client must identify again, and what it missed is gone.
            self.stats.invalid_sessions += 1
            if session is not None and not session.connected:
                self.stats.lost.extend(event for event, _ in session.pending)
                session.pending.clear()
            await ws.send_str(json.dumps({"op": INVALID_SESSION, "d": False}))
            return
        self.stats.resumes_accepted += 1
        session.ws = ws
        self._refresh_connected()
        since = int(data.get("seq") or 0)
        async with session.lock:
            for frame in [f for f in session.sent if f["s"] > since]:
                await ws.send_str(json.dumps(frame))
        pending, session.pending = session.pending, []
        for event, payload in pending:
            await self._send(session, event, payload)
        await self._send(session, "RESUMED", {})

    def _refresh_connected(self) -> None:
        live = self.connected_shards
        for shard_id in live:
            self.stats.shard(shard_id)
        for shard_id, stats in list(self.stats.shards.items()):
            stats.connected = shard_id in live

    # --- sending -------------------------------------------------------------------------------------------

    async def _send(self, session: Session, event: str, data: Any) -> None:
        async with session.lock:
            session.seq += 1
            frame = {"op": DISPATCH, "t": event, "s": session.seq, "d": data}
            session.sent.append(frame)
            del session.sent[:-500]
            if session.ws is not None and not session.ws.closed:
                await session.ws.send_str(json.dumps(frame))

    async def _send_to(self, ws: web.WebSocketResponse, event: str, data: Any) -> None:
        session = next((s for s in self.all_sessions if s.ws is ws), None)
        if session is not None:
            await self._send(session, event, data)

    def route(self, event: str, data: Any) -> int:
        """The shard (of the fake's shard count) an event goes to: its guild's, or 0 for one without a guild."""
        guild_id = None
        if isinstance(data, dict):
            guild_id = data.get("id") if event in GUILD_ITSELF else data.get("guild_id")
        return shard_of(int(guild_id), self.fake.shard_count) if guild_id else 0

    async def dispatch(self, event: str, data: Any, intent: Intent | None = None) -> bool:
        """Send an event to the shard it belongs to if that session asked for it; True if a connected session
        received it."""
        shard_id = self.route(event, data)
        session = self.sessions.get(shard_id)
        if session is not None and intent is not None and not session.intents & intent:
            return False  # not subscribed: Discord would not send it either
        self.stats.dispatched += 1
        shard = self.stats.shard(shard_id)
        shard.dispatched += 1
        if session is None or not session.connected:
            if session is not None and self.accept_resume and event != "INTERACTION_CREATE":
                session.pending.append((event, data))
            else:
                self.stats.lost.append(event)
            return False
        try:
            await self._send(session, event, data)
        except ConnectionResetError:
            self.stats.lost.append(event)
            return False
        shard.delivered[event] += 1
        return True

    async def drop(self, code: int = UNKNOWN_ERROR, *, shard: int | None = None) -> None:
        """Close the bot's connection as Discord does when it drops a session, of every shard or of one (of any
        shard count); the client reconnects."""
        for session in self.all_sessions:
            if session.ws is not None and (shard is None or session.shard_id == shard):
                ws, session.ws = session.ws, None
                await ws.close(code=code, message=b"dropped by the test")
        self._refresh_connected()

    async def close(self) -> None:
        self._open.set()
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"server shutting down")
