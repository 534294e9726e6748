"""How jobs look in Discord: status lines, result captions, files that fit the guild's upload limit."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime

import discord
from PIL import Image

from bot.blobs import Blobs
from bot.images import extension_for, full_decode
from bot.providers.status import JobStatus, Queued, Running
from bot.store.models import Job, JobState

OPERATION_NAMES = {"tryon": "Try-on", "filter": "Filter", "edit": "Edit", "imagine": "Imagine"}
SIZE_CHOICES = {
    "square_hd": "Square HD (1:1)", "square": "Square (1:1)", "portrait_4_3": "Portrait 3:4",
    "portrait_16_9": "Portrait 9:16", "landscape_4_3": "Landscape 4:3", "landscape_16_9": "Landscape 16:9",
}
MAX_CONTENT = 1900  # Discord's limit is 2,000 characters; keep room for mentions


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parameters(job: Job) -> str:
    """The request's parameters a member cares about, in one line."""
    r = job.request
    parts: list[str] = []
    if r.get("prompt"):
        parts.append(f"“{clip(discord.utils.escape_markdown(r['prompt']), 300)}”")
    if r.get("name"):
        parts.append(f"filter **{discord.utils.escape_markdown(r['name'])}**")
    if r.get("mask"):
        parts.append(f"mask {r['mask']}")
    if r.get("size"):
        parts.append(SIZE_CHOICES.get(r["size"], r["size"]))
    if job.seed is not None:
        parts.append(f"seed {job.seed}")
    return " · ".join(parts)


def elapsed(job: Job, now: datetime | None = None) -> str:
    end = job.finished_at or now or datetime.now(UTC)
    seconds = max(0, int((end - job.created_at).total_seconds()))
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


def status_title(job: Job) -> str:
    """How a job's public status message begins (for people: the bot finds its messages by the job's token)."""
    return f"**{OPERATION_NAMES.get(job.operation, job.operation)} · job #{job.id}**"


def status_line(job: Job, status: JobStatus | None = None, place: int | None = None) -> str:
    head = f"{status_title(job)} for <@{job.subject.user_id}>"
    if job.state is JobState.PENDING:
        what = f"⏳ waiting for a slot at {job.provider}" + (f" — place {place} in line" if place else "")
    elif isinstance(status, Queued) or job.state is JobState.QUEUED:
        position = status.position if isinstance(status, Queued) else job.queue_position
        what = f"🕒 queued at {job.provider}" + (f" — position {position}" if position is not None else "")
    elif isinstance(status, Running) or job.state is JobState.RUNNING:
        progress = status.progress if isinstance(status, Running) else job.progress
        what = f"🎨 running at {job.provider}" + (f" — {progress:.0f}%" if progress is not None else "")
    elif job.state is JobState.FETCHING or job.state is JobState.SUBMITTING:
        what = f"📡 {'sending to' if job.state is JobState.SUBMITTING else 'collecting images from'} {job.provider}"
    elif job.state is JobState.SUCCEEDED:
        what = "✅ done"
    elif job.state is JobState.CANCELLED:
        what = "🚫 cancelled"
    else:
        what = "❌ failed"
    return clip(f"{head}\n{parameters(job)}\n{what} · {elapsed(job)}", MAX_CONTENT)


def result_caption(job: Job) -> str:
    head = f"<@{job.subject.user_id}> your **{OPERATION_NAMES.get(job.operation, job.operation).lower()}** " \
           f"is ready · job #{job.id}"
    return clip(f"{head}\n{parameters(job)}\n{job.provider} · {elapsed(job)}", MAX_CONTENT)


def nsfw_caption(job: Job) -> str:
    return (f"<@{job.subject.user_id}> job #{job.id} finished, but the provider flagged the image as NSFW, so it is "
            f"only posted in age-restricted channels. Use 🔄 to try again.")


def failure_caption(job: Job) -> str:
    reason = discord.utils.escape_markdown(job.error_message or "the provider gave no reason")
    refund = " Nothing was charged to your quota." if job.refunded else ""
    verb = "was cancelled" if job.state is JobState.CANCELLED else "failed"
    return clip(f"<@{job.subject.user_id}> job #{job.id} {verb}: {clip(reason, 600)}.{refund}\n{parameters(job)}",
                MAX_CONTENT)


def fit(data: bytes, mime: str, limit: int) -> tuple[bytes, str]:
    """Re-encode an image until it fits `limit` bytes: JPEG at falling quality, then smaller. Blocking."""
    if len(data) <= limit:
        return data, mime
    with full_decode():  # decodes at full size: one of the process's decode slots (bot.images)
        return _reencode(data, limit)


def _reencode(data: bytes, limit: int) -> tuple[bytes, str]:
    with Image.open(io.BytesIO(data)) as src:
        img = src.convert("RGB")
    scale = 1.0
    while True:
        for quality in (90, 80, 70, 60):
            buf = io.BytesIO()
            frame = img if scale == 1.0 else img.resize((max(1, int(img.width * scale)),
                                                         max(1, int(img.height * scale))))
            frame.save(buf, "JPEG", quality=quality, optimize=True)
            if buf.tell() <= limit:
                return buf.getvalue(), "image/jpeg"
        scale *= 0.75


async def result_files(job: Job, blobs: Blobs, *, limit: int, spoiler: bool) -> list[discord.File]:
    """The job's images as files, each re-encoded if needed so that together they fit one message."""
    per_file = max(64 * 1024, limit // max(1, len(job.outputs)) - 4096)
    files = []
    for index, output in enumerate(job.outputs, start=1):
        data = await blobs.get(output.sha256)
        data, mime = await asyncio.to_thread(fit, data, output.mime, per_file)
        name = f"atelier-{job.id}-{index}.{extension_for(mime)}"
        files.append(discord.File(io.BytesIO(data), filename=name, spoiler=spoiler))
    return files


def jump_url(guild_id: str | int | None, channel_id: str | int | None, message_id: str | int | None) -> str | None:
    if not (guild_id and channel_id and message_id):
        return None
    return f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}"
