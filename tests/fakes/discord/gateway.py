"""The fake's gateway websocket: HELLO, IDENTIFY -> READY + GUILD_CREATE, heartbeats, RESUME, member chunks, and
dispatches from tests.

Frames are text JSON: discord.py asks for zlib-stream compression but only decompresses binary frames, so plain
text works (discord.md §1.2, pitfall 2). Events are sent only where the session's intents ask for them, as on
Discord. While no session is connected, an INTERACTION_CREATE is lost (the member sees "The application did not
respond"); other events are kept for a session that RESUMEs, if resuming is allowed (`accept_resume`), and are
lost with the session otherwise, since a new session starts from a fresh READY.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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


@dataclass
class Session:
    id: str
    intents: int
    ws: web.WebSocketResponse | None
    seq: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)  # dispatches, for replay on RESUME
    pending: list[tuple[str, Any]] = field(default_factory=list)  # events that arrived while disconnected
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def connected(self) -> bool:
        return self.ws is not None and not self.ws.closed


@dataclass
class GatewayStats:
    connections: int = 0
    identifies: int = 0
    resumes_requested: int = 0
    resumes_accepted: int = 0
    invalid_sessions: int = 0
    heartbeats: int = 0
    member_requests: int = 0
    dispatched: int = 0
    lost: list[str] = field(default_factory=list)  # events nobody was connected to receive


class Gateway:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.session: Session | None = None  # Atelier runs one shard: one session at a time
        self.stats = GatewayStats()
        self.accept_resume = False
        self.heartbeat_interval_ms = 41_250
        self._sockets: set[web.WebSocketResponse] = set()
        self._open = asyncio.Event()  # cleared: new connections wait before HELLO (Discord unreachable)
        self._open.set()

    @property
    def connected(self) -> bool:
        return self.session is not None and self.session.connected

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
            if self.session is not None and self.session.ws is ws:
                self.session.ws = None
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
        self.stats.identifies += 1
        old = self.session
        self.session = session = Session(id=secrets.token_hex(16), intents=int(data.get("intents", 0)), ws=ws)
        if old is not None and old.ws is not None and old.ws is not ws:
            await old.ws.close(code=UNKNOWN_ERROR)
        bot = self.fake.bot
        guilds = [g for g in self.fake.guilds.values() if bot.id in g.members]
        await self._send(session, "READY", {
            "v": 10, "user": bot.to_json(), "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.id, "resume_gateway_url": self.fake.gateway_url, "shard": [0, 1],
            "application": {"id": str(self.fake.application_id), "flags": 0}, "private_channels": [],
            "relationships": [], "user_settings": {}, "session_type": "normal", "geo_ordered_rtc_regions": []})
        for guild in guilds:
            await self._send(session, "GUILD_CREATE", guild.to_json(bot))

    async def _resume(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        self.stats.resumes_requested += 1
        session = self.session
        if not self.accept_resume or session is None or data.get("session_id") != session.id \
                or data.get("token") != self.fake.token or session.connected:
            # The session cannot be resumed: the client must identify again, and what it missed is gone.
            self.stats.invalid_sessions += 1
            if session is not None and not session.connected:
                self.stats.lost.extend(event for event, _ in session.pending)
                session.pending.clear()
            await ws.send_str(json.dumps({"op": INVALID_SESSION, "d": False}))
            return
        self.stats.resumes_accepted += 1
        session.ws = ws
        since = int(data.get("seq") or 0)
        async with session.lock:
            for frame in [f for f in session.sent if f["s"] > since]:
                await ws.send_str(json.dumps(frame))
        pending, session.pending = session.pending, []
        for event, payload in pending:
            await self._send(session, event, payload)
        await self._send(session, "RESUMED", {})

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
        session = self.session
        if session is not None and session.ws is ws:
            await self._send(session, event, data)

    async def dispatch(self, event: str, data: Any, intent: Intent | None = None) -> bool:
        """Send an event to the bot if its session asked for it; True if a connected session received it."""
        session = self.session
        if session is not None and intent is not None and not session.intents & intent:
            return False  # not subscribed: Discord would not send it either
        self.stats.dispatched += 1
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
        return True

    async def drop(self, code: int = UNKNOWN_ERROR) -> None:
        """Close the bot's connection as Discord does when it drops a session; the client reconnects."""
        session = self.session
        if session is not None and session.ws is not None:
            ws, session.ws = session.ws, None
            await ws.close(code=code, message=b"dropped by the test")

    async def close(self) -> None:
        self._open.set()
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"server shutting down")
