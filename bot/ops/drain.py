"""The graceful drain after SIGTERM, for any process kind: stop taking new work, let what is on the wire land,
then let the process close (Runner.stop hands the leases back) within SHUTDOWN_GRACE_S.

While draining, Runner.create refuses every new job with RestartingError (a member is told privately that the bot
is restarting; nothing is recorded or charged), jobs waiting for a provider slot are not sent, and no job is
adopted. Submits already on the wire get until the grace runs out to store their handles; a synchronous call
still running then is abandoned as a crash would leave it, and the next process ends it as interrupted (refunded).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from bot.jobs import Runner
from bot.jobs.runner import SUBMIT_WAIT_S
from bot.ops.metrics import DRAINING

log = logging.getLogger(__name__)

Busy = Callable[[], int]

POLL_S = 0.05
# Of the grace, what closing takes after the wait: the gateway, the runner's tasks, the leases, the store.
CLOSE_RESERVE_S = 5.0


class Drain:
    def __init__(self, runner: Runner, grace_s: float) -> None:
        self.runner = runner
        self.grace_s = grace_s
        self._deadline: float | None = None  # monotonic: when waiting must end so that closing fits the grace
        # What is under way and worth the wait, by name: submits and deliveries; a bot adds its members' commands.
        self._busy: dict[str, Busy] = {"on the wire": runner.on_the_wire}

    def add_busy(self, name: str, busy: Busy) -> None:
        """Also wait for this (a count of things under way) before the process closes."""
        self._busy[name] = busy

    def busy(self) -> dict[str, int]:
        return {name: count for name, busy in self._busy.items() if (count := busy())}

    @property
    def draining(self) -> bool:
        return self._deadline is not None

    async def run(self) -> None:
        """Begin draining and wait until nothing is on the wire, or the grace (less closing) is spent."""
        if self._deadline is not None:
            return
        began = time.monotonic()
        self._deadline = began + max(0.0, self.grace_s - min(CLOSE_RESERVE_S, self.grace_s / 4))
        self.runner.draining = True
        DRAINING.set(1)
        log.info("draining (SIGTERM): new jobs are refused; what is under way (%s) gets up to %.0f s to finish",
                 _say(self.busy()), self._deadline - began)
        # Polled: deliveries and answers under way have no future to wait on, only counts.
        while self.busy() and time.monotonic() < self._deadline:  # noqa: ASYNC110
            await asyncio.sleep(POLL_S)
        left = self.busy()
        if left:
            log.warning("drained after %.1f s with %s still under way: left to the next process (a call still on "
                        "the wire ends as interrupted there)", time.monotonic() - began, _say(left))
        else:
            log.info("drained after %.1f s: nothing under way", time.monotonic() - began)

    def submit_wait_s(self) -> float:
        """How long stopping the runner may still wait for submits: what the grace leaves, once draining."""
        if self._deadline is None:
            return SUBMIT_WAIT_S
        return max(0.0, self._deadline - time.monotonic())


def _say(busy: dict[str, int]) -> str:
    return ", ".join(f"{count} {name}" for name, count in busy.items()) or "nothing"
