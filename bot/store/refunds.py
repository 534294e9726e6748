"""The one rule for giving a job's cost back. Every caller (runner, cancel command, recovery) asks this."""

from __future__ import annotations

from bot.store.models import Job


def refund_due(job: Job) -> bool:
    """A finished job that delivered no image gives its cost back.

    Whether the provider charged us (`job.charged`) does not matter here: that is the operator's account with
    the provider, not the member's quota. A member is never charged for an image they did not get, whether
    the job failed, was cancelled, or "succeeded" with nothing to show (every image filtered, say).
    Refunding twice is prevented by the store (`JobStore.refund` acts once), not by this rule.
    """
    return job.state.terminal and not job.outputs
