"""The fake Discord runs on an event loop of its own, in its own thread, so that it keeps answering the bot whatever
the test process is doing (another test's event loop, a synchronous test, a fixture between tests).

All of the fake's state changes happen on that loop: REST and gateway handlers run there, and the test-facing
methods that change the world or talk to the bot hop there (`on_fake_loop`). Tests read the state from their own
thread; readers copy dicts before iterating them (one C-level call under CPython's GIL), so a concurrent insert
never breaks an iteration.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

P = ParamSpec("P")
S = TypeVar("S")
T = TypeVar("T")


class LoopThread:
    """An event loop running in a daemon thread, and a way to run coroutines on it from any other loop."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=self.name, daemon=True)
        self._thread.start()

    def here(self) -> bool:
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on this thread's loop and wait for it from the caller's loop."""
        if self.loop is None:
            coro.close()
            raise RuntimeError(f"{self.name} is not running")
        if self.here():
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def call_soon(self, callback: Callable[[], object]) -> None:
        """Call `callback` on this thread's loop, in order with everything else sent there."""
        if self.loop is None or self.here():
            callback()
        else:
            self.loop.call_soon_threadsafe(callback)

    async def stop(self) -> None:
        loop, thread = self.loop, self._thread
        if loop is None or thread is None:
            return

        async def cancel_the_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        await self.run(cancel_the_rest())
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join, 10)
        loop.close()
        self.loop = self._thread = None


def on_fake_loop(method: Callable[Concatenate[S, P], Awaitable[T]]) -> Callable[Concatenate[S, P], Awaitable[T]]:
    """Run a method of the fake (or of an object with a `.fake`) on the fake's loop, whoever calls it."""

    @functools.wraps(method)
    async def hop(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        fake = getattr(self, "fake", self)
        return await fake.thread.run(method(self, *args, **kwargs))  # type: ignore[attr-defined, no-any-return]

    return hop
