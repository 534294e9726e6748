"""Where webhook calls meet the jobs waiting for them.

A call names the provider's job id. If a poll loop is following that job it is woken at once; a call that
arrives before the submit's answer was even stored (a fast job) is kept briefly and handed over when the
loop starts. Duplicates and replays only wake a loop that then asks the provider, so they are harmless.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from bot.providers.hints import CompletionHint
from bot.providers.status import Terminal

# Early calls kept for jobs nobody follows yet, per provider: bounded, so a flood of made-up ids costs a little
# memory at most, and a flood of unsigned calls cannot push out another provider's verified results.
EARLY_LIMIT = 10_000
EARLY_TTL_S = 600.0
# After this many jobs in a row ended without their webhook, a provider's webhooks are taken to be not arriving
# (a firewall, a wrong public URL, an endpoint that ignores them) and its jobs are polled at full speed again.
MISSES_BEFORE_DISTRUST = 3


class WebhookHub:
    def __init__(self) -> None:
        self._waiting: dict[tuple[str, str], CompletionHint] = {}
        # provider -> remote id -> (when, the verified outcome if the call carried one, whether it was verified)
        self._early: dict[str, OrderedDict[str, tuple[float, Terminal | None, bool]]] = {}
        self._misses: dict[str, int] = {}
        self.calls = 0
        # With a store shared by several processes: hands a call no job here waits for to the others
        # (bot.webhooks.shared), since the process following that job may be another one: (provider, remote id,
        # whether its signature was verified).
        self.forward: Callable[[str, str, bool, Terminal | None], None] | None = None

    def expect(self, provider: str, remote_id: str) -> CompletionHint:
        """A hint for a job about to be followed; already set if its webhook came first."""
        hint = CompletionHint(expected=lambda: self.arriving(provider))
        self._waiting[(provider, remote_id)] = hint
        early = self._early.get(provider, OrderedDict()).pop(remote_id, None)
        if early is not None and time.monotonic() - early[0] < EARLY_TTL_S:
            self._misses[provider] = 0  # a call for one of our jobs got through
            hint.set(early[1], verified=early[2])
        return hint

    def forget(self, provider: str, remote_id: str, *, ended_by_webhook: bool | None = None) -> None:
        """The job is no longer followed. `ended_by_webhook`: True if its call came, False if it ended at the
        provider without one although one was due, None when that says nothing (cancelled, expired, resumed)."""
        self._waiting.pop((provider, remote_id), None)
        if ended_by_webhook is True:
            self._misses[provider] = 0
        elif ended_by_webhook is False:
            self._misses[provider] = self._misses.get(provider, 0) + 1
            if self._misses[provider] == MISSES_BEFORE_DISTRUST:
                # Jobs sleeping out a safety interval would wait it out: wake them to poll at full speed.
                for (name, _), hint in self._waiting.items():
                    if name == provider:
                        hint.look_now()

    def waiting_for(self, provider: str, remote_id: str) -> bool:
        """Whether a job this process follows waits for a call about this provider job."""
        return (provider, remote_id) in self._waiting

    def arriving(self, provider: str) -> bool:
        return self._misses.get(provider, 0) < MISSES_BEFORE_DISTRUST

    def notify(self, provider: str, remote_id: str, status: Terminal | None = None, *, verified: bool = False,
               forwarded: bool = False) -> bool:
        """A webhook call for this job; `status` (its outcome) only when the call was verified, `verified` when its
        signature was (with or without an outcome). True if a job was waiting. `forwarded`: another process
        received it (it is not passed on again)."""
        verified = verified or status is not None
        if not forwarded:
            self.calls += 1
        hint = self._waiting.get((provider, remote_id))
        if hint is not None:
            # Proof that this provider's calls get through. A call about a job nobody follows is not: it may be
            # a late retry, a replay, or another account's request.
            self._misses[provider] = 0
            hint.set(status, verified=verified)
            return True
        if self.forward is not None and not forwarded:
            self.forward(provider, remote_id, verified, status)
        early = self._early.setdefault(provider, OrderedDict())
        early[remote_id] = (time.monotonic(), status, verified)
        early.move_to_end(remote_id)
        while len(early) > EARLY_LIMIT:
            early.popitem(last=False)
        return False
