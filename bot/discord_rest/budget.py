"""A token bucket for bot-token REST requests, with a line of waiting requests served strictly by priority.

The bucket holds `limit` tokens (this process's share of DISCORD_REST_PER_SECOND, whole requests), and each token
spent comes back TOKEN_BACK_S after it was spent. So no one-second window ever sees more than the share from this
process, which is how Discord counts its global limit, and a burst up to the share goes at once, with no delay. (A
bucket refilled at a steady rate with room for a burst would let the burst and the refill both into one second.)
The extra fifth of a second is for requests that take longer to reach Discord than the ones after them (a
busy event loop, on either side, delays some requests and not the next).

A request goes at once when a token is there and nobody waits; otherwise it joins the line of its priority, and
each token, as it comes back, goes to the first request of the most urgent line. A waiting request that is
cancelled leaves its line (a token it was handed and never used goes back at once).

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

TOKEN_BACK_S = 1.2  # a spent token is back after this long: Discord's one second, and a margin for latency
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
        self._spent: deque[float] = deque()  # when each token out now was spent, oldest first
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
    def limit(self) -> int:
        """Tokens in the bucket: this process's share in whole requests (at least one)."""
        return max(1, int(self.rate))

    def share(self, processes: int) -> None:
        """`processes` live processes share the budget from now on."""
        processes = max(1, processes)
        if processes == self.processes:
            return
        self.processes = processes
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._hand_out()

    # --- taking a token ------------------------------------------------------------------------------------

    async def acquire(self, priority: Priority) -> None:
        """Return when a request at `priority` may be sent."""
        if not self.waiting() and self._take():
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
                self._give_back()
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

    def _take(self) -> bool:
        now = self._clock()
        while self._spent and self._spent[0] <= now - TOKEN_BACK_S:
            self._spent.popleft()
        if len(self._spent) >= self.limit:
            return False
        self._spent.append(now)
        return True

    def _give_back(self) -> None:
        if self._spent:
            self._spent.pop()

    def _granted(self, priority: Priority) -> None:
        self.sent += 1
        self._recent.append((self._clock(), priority))
        self._forget_old()

    def _forget_old(self) -> None:
        cutoff = self._clock() - WINDOW_S
        while self._recent and self._recent[0][0] < cutoff:
            self._recent.popleft()

    def _schedule(self) -> None:
        """Set the timer for the next token back, if requests wait and none is set."""
        if self._timer is not None or not self.waiting():
            return
        if len(self._spent) < self.limit:
            delay = 0.0
        else:
            delay = max(0.0, self._spent[len(self._spent) - self.limit] + TOKEN_BACK_S - self._clock())
        self._timer = asyncio.get_running_loop().call_later(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._hand_out()

    def _hand_out(self) -> None:
        """Tokens to the waiting requests, the most urgent line first, for as long as there are tokens."""
        for priority, line in self._lines.items():
            while line:
                if line[0].done():  # cancelled meanwhile
                    line.popleft()
                    continue
                if not self._take():
                    self._schedule()
                    return
                self._granted(priority)
                line.popleft().set_result(None)
        self._schedule()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
