"""A token bucket for bot-token REST requests, with a line of waiting requests served strictly by priority.

Tokens come at `rate` per second (this process's share of DISCORD_REST_PER_SECOND) up to a small burst, so that in
any one second this process sends at most about rate * (1 + BURST_S) requests: Discord counts its global limit per
second, and a bucket holding a full second would let two seconds' worth through in one. A request goes at once when
a token is there and nobody waits; otherwise it joins the line of its priority, and each token, as it comes, goes to
the first request of the most urgent line. A waiting request that is cancelled leaves its line (a token it was
handed and never used goes back).

No task runs: one timer, set only while requests wait, hands out the next token.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from prometheus_client import Counter

from bot.discord_rest.priority import Priority
from bot.ops.metrics import REGISTRY

BURST_S = 0.1  # tokens kept for a burst: a tenth of a second's worth (at least one)
WINDOW_S = 2.0  # how far back the recent use is counted (spare rate, room for extras)
MIN_SPARE = 0.1  # the spare rate reported is never below this share of the rate: progress slows, never stops
ROOM = 0.5  # "room" for optional requests: recent use below half the rate, and nobody waiting

WAITED = Counter("atelier_discord_rest_waited_total", "Bot-token REST requests that waited for the request budget "
                 "(DISCORD_REST_PER_SECOND), by priority.", ["priority"], registry=REGISTRY)
WAIT_SECONDS = Counter("atelier_discord_rest_wait_seconds_total", "Seconds bot-token REST requests waited for the "
                       "request budget, by priority.", ["priority"], registry=REGISTRY)
SKIPPED = Counter("atelier_discord_rest_skipped_total", "Optional Discord requests left out because the request "
                  "budget was short (the reactions pre-added to a result).", registry=REGISTRY)


class RestBudget:
    def __init__(self, per_second: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if per_second <= 0:
            raise ValueError("a REST budget needs a rate above 0")
        self.per_second = per_second
        self.processes = 1
        self._clock = clock
        self._tokens = self.capacity
        self._updated = clock()
        self._lines: dict[Priority, deque[asyncio.Future[None]]] = {p: deque() for p in Priority}
        self._timer: asyncio.TimerHandle | None = None
        self._recent: deque[tuple[float, Priority]] = deque()  # (granted at, priority), the last WINDOW_S
        self.sent = 0
        self.waited = 0
        self.wait_seconds = 0.0

    # --- the rate ------------------------------------------------------------------------------------------

    @property
    def rate(self) -> float:
        """This process's requests per second: the install's budget split evenly among the live processes."""
        return self.per_second / self.processes

    @property
    def capacity(self) -> float:
        return max(1.0, self.rate * BURST_S)

    def share(self, processes: int) -> None:
        """`processes` live processes share the budget from now on."""
        processes = max(1, processes)
        if processes == self.processes:
            return
        self._refill()
        self.processes = processes
        self._tokens = min(self._tokens, self.capacity)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._schedule()

    # --- taking a token ------------------------------------------------------------------------------------

    async def acquire(self, priority: Priority) -> None:
        """Return when a request at `priority` may be sent."""
        self._refill()
        if self._tokens >= 1 and not self.waiting():
            self._tokens -= 1
            self._granted(priority)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        line = self._lines[priority]
        line.append(future)
        started = self._clock()
        self._schedule()
        try:
            await future
        except asyncio.CancelledError:
            if not future.done() or future.cancelled():
                if future in line:
                    line.remove(future)
            else:  # handed a token, then cancelled before using it: the next one in line gets it
                self._tokens += 1
                self._hand_out()
            raise
        waited = self._clock() - started
        self.waited += 1
        self.wait_seconds += waited
        WAITED.labels(priority.name.lower()).inc()
        WAIT_SECONDS.labels(priority.name.lower()).inc(waited)

    def waiting(self, above: Priority | None = None) -> int:
        """Requests waiting now (only those more urgent than `above`, when given)."""
        return sum(len(line) for p, line in self._lines.items() if above is None or p < above)

    # --- what is left -------------------------------------------------------------------------------------

    def recent_rate(self, above: Priority | None = None) -> float:
        """Requests per second granted lately (only those more urgent than `above`, when given)."""
        self._forget_old()
        count = sum(1 for _, p in self._recent if above is None or p < above)
        return count / WINDOW_S

    def spare_rate(self, priority: Priority) -> float:
        """What the more urgent requests lately left of this process's rate for requests at `priority`."""
        return max(self.rate * MIN_SPARE, self.rate - self.recent_rate(above=priority))

    def has_room(self, requests: int) -> bool:
        """Whether `requests` optional requests fit now without holding anything up: nobody waits, and recent use
        plus these stays under half the rate."""
        if self.waiting():
            return False
        return self.recent_rate() + requests / WINDOW_S <= ROOM * self.rate

    def skipped(self) -> None:
        SKIPPED.inc()

    # --- the bucket ---------------------------------------------------------------------------------------

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def _granted(self, priority: Priority) -> None:
        self.sent += 1
        self._recent.append((self._clock(), priority))
        self._forget_old()

    def _forget_old(self) -> None:
        cutoff = self._clock() - WINDOW_S
        while self._recent and self._recent[0][0] < cutoff:
            self._recent.popleft()

    def _schedule(self) -> None:
        """Set the timer for the next token, if requests wait and none is set."""
        if self._timer is not None or not self.waiting():
            return
        self._refill()
        delay = max(0.0, (1 - self._tokens) / self.rate)
        self._timer = asyncio.get_running_loop().call_later(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._hand_out()

    def _hand_out(self) -> None:
        self._refill()
        while self._tokens >= 1:
            future = self._next_in_line()
            if future is None:
                break
            self._tokens -= 1
            future.set_result(None)
        self._schedule()

    def _next_in_line(self) -> asyncio.Future[None] | None:
        for priority in Priority:
            line = self._lines[priority]
            while line:
                future = line.popleft()
                if not future.done():
                    self._granted(priority)
                    return future
        return None

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
