"""What members keep for themselves, without Discord: their preferences, a saved photo, and being forgotten. Used by
the Discord layer (through bot.engine) and by `atelier forget`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from bot.blobs import Blobs
from bot.operations import ImageInput
from bot.store.base import JobStore
from bot.store.models import Forgotten, PhotoRef

log = logging.getLogger(__name__)


async def keep_photo(blobs: Blobs, image: ImageInput) -> PhotoRef:
    """Store a checked image by its content; the reference is what preferences keep."""
    sha256, _ = await blobs.put(image.data)
    return PhotoRef(sha256=sha256, mime=image.mime, width=image.width, height=image.height,
                    filename=image.filename or "photo")


async def photo_image(blobs: Blobs, photo: PhotoRef) -> ImageInput | None:
    """The saved photo as a job's input, or None when its file is gone."""
    try:
        data = await blobs.get(photo.sha256)
    except FileNotFoundError:
        return None
    return ImageInput(data=data, mime=photo.mime, width=photo.width, height=photo.height, filename=photo.filename,
                      sha256=photo.sha256)


async def forget(store: JobStore, blobs: Blobs, user_id: str, *, clock: Callable[[], datetime]) -> Forgotten | None:
    """Forget a user: their rows anonymised or deleted (JobStore.forget_member), then the images only they used.
    None while a job of theirs is still running or owed a delivery (nothing changed)."""
    started = clock()
    done = await store.forget_member(user_id, now=started)
    if done is None:
        return None
    for sha256 in done.blobs:
        # A job started meanwhile by someone else may have stored the very same image: it is theirs now.
        await blobs.delete_unless_written_since(sha256, started)
    log.info("forgot a member: %d job(s) anonymised, %d post(s) and %d image(s) deleted", done.jobs, done.posts,
             len(done.blobs))
    return done
