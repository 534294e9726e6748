"""What a job costs in money: its worst case when it is recorded, and what it cost once it has ended.

Both follow the image quota's one rule (bot.store.refunds): a job is charged the images its member received.
The exception is a paid call that may have been billed without anything coming back (a synchronous call
interrupted mid-way, `error_code == "interrupted"` with `charged` unknown): the member gets it back, but its worst
case stays counted against the install's and the guild's spend, because the provider may well have charged it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.money.prices import Price
from bot.operations import EditRequest, ImagineRequest, Request, Size, image_count
from bot.store.models import Job
from bot.store.refunds import images_charged


def requested_pixels(request: Request) -> int | None:
    """The output size asked for, when it is explicit; None (the provider's largest) for a preset or none."""
    size = request.size if isinstance(request, EditRequest | ImagineRequest) else None
    if size is not None and size.width is not None and size.height is not None:
        return size.width * size.height
    return None


def worst_case_micro(prices: Sequence[Price], request: Request) -> int:
    """The most the job can cost: every image asked for, at the dearest provider it may go to, at its size."""
    pixels = requested_pixels(request)
    return max((p.image_micro(pixels) for p in prices), default=0) * image_count(request)


@dataclass(frozen=True, slots=True)
class Settlement:
    images: int  # delivered to the member
    reserved_micro: int  # counted against the install's and the guild's caps
    member_micro: int  # counted against the member's daily cap


def _asked_pixels(job: Job) -> int | None:
    size = job.request.get("size")
    if not isinstance(size, str):
        return None
    parsed = Size.parse(size)
    return parsed.width * parsed.height if parsed.width is not None and parsed.height is not None else None


def settle(job: Job, price: Price, *, asked_images: int, reserved_micro: int) -> Settlement:
    """What an ended job cost: its delivered images (per-megapixel prices on their real size), never more than
    was reserved. `price` is that of the provider that ran it (the reservation was for the dearest it might have
    gone to); an interrupted paid call keeps that provider's worst case for every image asked for."""
    delivered = images_charged(job)
    cost = sum(price.image_micro(o.width * o.height) for o in job.outputs[:delivered])
    member = min(cost, reserved_micro)
    if delivered == 0 and job.charged is None and job.error_code == "interrupted":
        worst = min(reserved_micro, price.image_micro(_asked_pixels(job)) * asked_images)
        return Settlement(images=0, reserved_micro=worst, member_micro=0)
    return Settlement(images=delivered, reserved_micro=member, member_micro=member)
