"""What an operator sees of the Discord side: REST requests and 429s by route template (an aiohttp trace on
discord.py's own session, so every request counts, retries and interaction callbacks included), the shards this
process owns with their gateway latency, and readiness (every shard connected)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from types import SimpleNamespace

import aiohttp
import discord
import yarl

from bot.ops import metrics

# Path segments kept as they are: Discord's own words (channels, messages, @original, ...). Everything else is an
# id, a token or an emoji and becomes a placeholder, so the label never carries one.
_WORD = re.compile(r"^@?[a-z][a-z0-9_-]{0,31}$")
_TOKEN_AFTER = frozenset({"interactions", "webhooks"})  # .../{id}/{token}/...


def route_template(url: yarl.URL, api_base: str) -> str:
    """'/channels/{id}/messages' for 'https://discord.com/api/v10/channels/123/messages?limit=5'."""
    path = url.path
    base = yarl.URL(api_base).path.rstrip("/")
    if base and path.startswith(base):
        path = path[len(base):]
    parts: list[str] = []
    segments = [s for s in path.split("/") if s]
    for index, segment in enumerate(segments):
        before = segments[index - 2] if index >= 2 else ""
        if segment.isdigit():
            parts.append("{id}")
        elif before in _TOKEN_AFTER and segments[index - 1].isdigit():
            parts.append("{token}")
        elif index and segments[index - 1] == "reactions":
            parts.append("{emoji}")
        elif _WORD.match(segment):
            parts.append(segment)
        else:
            parts.append("{}")
    return "/" + "/".join(parts)


def http_trace(api_base: str) -> aiohttp.TraceConfig:
    """Counts every REST request discord.py makes on its session, by method, route template and status."""
    trace = aiohttp.TraceConfig()
    api_host = yarl.URL(api_base).host

    async def on_end(session: aiohttp.ClientSession, context: SimpleNamespace,
                     params: aiohttp.TraceRequestEndParams) -> None:
        if params.url.host != api_host:
            return  # attachment downloads from the CDN are not REST calls
        method = metrics.bounded(params.method.upper(), metrics.HTTP_METHODS)
        route = route_template(params.url, api_base)
        status = params.response.status
        metrics.DISCORD_REQUESTS.labels(method, route, metrics.status_class(status)).inc()
        if status == 429:
            metrics.DISCORD_RATE_LIMITED.labels(method, route).inc()

    trace.on_request_end.append(on_end)
    return trace


def shards(client: discord.Client) -> Iterable[tuple[int, bool, float | None]]:
    """(shard id, connected, heartbeat latency) for each shard the client runs (one for an unsharded client). A
    sharded client lists the shards it claimed, connected or not yet; none while it stands by (bot.shards)."""
    if isinstance(client, discord.AutoShardedClient):
        for shard_id in client.shard_ids or ():
            info = client.get_shard(shard_id)
            up = bool(info is not None and not info.is_closed() and client.is_ready())
            latency = info.latency if info is not None else math.nan
            yield shard_id, up, latency if math.isfinite(latency) else None
        return
    ws = client.ws
    up = client.is_ready() and not client.is_closed() and ws is not None and ws.open
    latency = client.latency
    yield client.shard_id or 0, up, latency if math.isfinite(latency) else None


async def shards_ready(client: discord.Client) -> str | None:
    if isinstance(client, discord.AutoShardedClient) and not client.shard_ids:
        return "standing by: no shard range is free (jobs are worked meanwhile)"
    down = [str(shard) for shard, up, _ in shards(client) if not up]
    return f"shard(s) {', '.join(down)} not connected" if down else None
