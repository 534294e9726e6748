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

from bot.jobs import Runner
from bot.jobs.runner import SUBMIT_WAIT_S
from bot.ops.metrics import DRAINING

log = logging.getLogger(__name__)

POLL_S = 0.05
# Of the grace, what closing takes after the wait: the gateway, the runner's tasks, the leases, the store.
CLOSE_RESERVE_S = 5.0


class Drain:
    def __init__(self, runner: Runner, grace_s: float) -> None:
        self.runner = runner
        self.grace_s = grace_s
        self._deadline: float | None = None  # monotonic: when waiting must end so that closing fits the grace

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
        log.info("draining (SIGTERM): new jobs are refused; %d request(s) on the wire get up to %.0f s to land",
                 self.runner.on_the_wire(), self._deadline - began)
        # Polled: deliveries under way have no future to wait on, only a set of job ids.
        while self.runner.on_the_wire() and time.monotonic() < self._deadline:  # noqa: ASYNC110
            await asyncio.sleep(POLL_S)
        left = self.runner.on_the_wire()
        if left:
            log.warning("drained after %.1f s with %d request(s) still on the wire: they are left to the next "
                        "process, which ends them as interrupted", time.monotonic() - began, left)
        else:
            log.info("drained after %.1f s: nothing on the wire", time.monotonic() - began)

    def submit_wait_s(self) -> float:
        """How long stopping the runner may still wait for submits: what the grace leaves, once draining."""
        if self._deadline is None:
            return SUBMIT_WAIT_S
        return max(0.0, self._deadline - time.monotonic())
