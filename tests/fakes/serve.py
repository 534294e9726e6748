"""Run the fake providers in their own process, for benchmarks and end-to-end tests.

    python -m tests.fakes.serve fal novita [--host 127.0.0.1]

Prints one JSON line {"fal": "http://127.0.0.1:PORT", ...} once every fake is listening, then serves until
killed. Job scripts are set over HTTP: POST /_admin/script {"duration_range": [2, 20], ...}; GET /_admin/stats.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

from tests.fakes.base import FakeServer
from tests.fakes.fal import FakeFal
from tests.fakes.glam import FakeGlam
from tests.fakes.novita import FakeNovita
from tests.fakes.pixazo import FakePixazo

FAKES: dict[str, type[FakeServer]] = {"fal": FakeFal, "glam": FakeGlam, "novita": FakeNovita, "pixazo": FakePixazo}


async def serve(names: list[str], host: str, key: str) -> None:
    servers = {name: FAKES[name](key=key) for name in names}
    urls = {name: await server.start(host) for name, server in servers.items()}
    print(json.dumps(urls), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers.values():
        await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("names", nargs="+", choices=sorted(FAKES))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--key", default="bench-key")
    args = parser.parse_args()
    asyncio.run(serve(args.names, args.host, args.key))


if __name__ == "__main__":
    main()
