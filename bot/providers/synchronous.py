"""Synchronous providers inside the job state machine.

Some endpoints (Novita's Seedream 5.0 lite) answer with the images in the submit's own response: no task id,
nothing to poll, no webhook. Such a job is still recorded before the call and shown as running while it lasts.
The runner stores a placeholder handle before sending (the call may be on the wire), and replaces it with the
call's outcome (the output URLs) as soon as the answer arrives. A restarted process that finds the placeholder
cannot know whether the call was billed, and there is nothing to ask: the job ends as interrupted, refunded to
the member, and is never sent again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.errors import AtelierError
from bot.providers.status import Failed, OutputImage, RemoteHandle, Succeeded

SYNCHRONOUS = "synchronous"
IMAGES = "images"


class SynchronousCallInterrupted(AtelierError):
    """The call was sent and its answer never came (a timeout, a dropped connection): it may have been billed,
    so it is neither sent again nor moved to another provider."""

    def __init__(self, provider: str, why: str) -> None:
        super().__init__(f"interrupted: the call to {provider} {why} after the request was sent; it was not sent "
                         f"again so that it cannot be charged twice")
        self.provider = provider


def placeholder(provider: str, job_id: int, operation: str) -> RemoteHandle:
    """Stored before the call: "a synchronous call for this job may be on the wire"."""
    return RemoteHandle(provider=provider, remote_id=f"job-{job_id}", operation=operation,
                        extra={SYNCHRONOUS: True})


def answered(provider: str, remote_id: str, operation: str, outputs: Sequence[OutputImage],
             seed: int | None = None) -> RemoteHandle:
    """The call's outcome, as a handle a restarted process can finish the job from (download, deliver)."""
    images: list[dict[str, Any]] = [{"url": o.url, "nsfw": o.nsfw, "mime": o.mime} for o in outputs]
    return RemoteHandle(provider=provider, remote_id=remote_id, operation=operation,
                        extra={SYNCHRONOUS: True, IMAGES: images, "seed": seed})


def is_synchronous(handle: RemoteHandle | None) -> bool:
    return handle is not None and handle.extra.get(SYNCHRONOUS) is True


def settle(handle: RemoteHandle, *, interrupted_because: str) -> Succeeded | Failed:
    """What a stored synchronous handle means: the images that came back, or (a placeholder) an interruption."""
    images = handle.extra.get(IMAGES)
    if images is None:
        return Failed(reason=f"interrupted: {interrupted_because}; it was not sent again so that it cannot be "
                             f"charged twice", charged=None, code="interrupted")
    outputs = tuple(OutputImage(url=str(i["url"]), nsfw=bool(i.get("nsfw")), mime=i.get("mime"))
                    for i in images if isinstance(i, dict) and i.get("url"))
    if not outputs:
        return Failed(reason=f"{handle.provider} answered without an image", charged=None, code="no_images")
    seed = handle.extra.get("seed")
    return Succeeded(outputs=outputs, seed=seed if isinstance(seed, int) else None)
