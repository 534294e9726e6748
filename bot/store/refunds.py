"""The one rule for what a job costs its member. Every caller (runner, cancel command, recovery) asks this."""

from __future__ import annotations

from bot.store.models import Job


def images_charged(job: Job) -> int:
    """What a finished job charges against its member's daily quota: the images they get.

    A job reserves its full cost when it is created (`job.cost`, the images asked for); once it has ended it
    charges only the images the member actually receives, never more than it reserved:
    - a job that failed, was cancelled, or "succeeded" with nothing to show charges nothing;
    - a job that returned fewer images than asked (count 4, one image) charges the images it returned;
    - a job marked `withhold_nsfw` (started in a channel that is not age-restricted) whose result has an image
      flagged NSFW charges nothing: the whole result is withheld there, so the member gets none of it;
    - a job whose delivery was given up (`undeliverable`) charges nothing: the member never got it;
    - a job whose receiver could show none of its images when it delivered (withheld as NSFW in a channel whose
      age restriction was lifted meanwhile or by DM, or no channel and no DM would take it) charges nothing: the
      receiver settles it to 0 (`JobStore.settle_cost`), since only it knows.

    Whether the provider charged us (`job.charged`) does not matter here: that is the operator's account with
    the provider, not the member's quota. A member is never charged for an image they did not get.
    A job still in flight keeps its full reservation. Settling twice is harmless: the store only ever lowers a
    job's cost to this figure (`JobStore.settle_cost`), so a crash and a second settlement change nothing.
    """
    if not job.state.terminal:
        return job.cost
    if job.undeliverable or (job.withhold_nsfw and any(o.nsfw for o in job.outputs)):
        return 0
    return min(job.cost, len(job.outputs))


def refund_due(job: Job) -> bool:
    """Whether any of the job's reserved cost goes back to its member (see `images_charged`)."""
    return job.state.terminal and not job.refunded and images_charged(job) < job.cost
