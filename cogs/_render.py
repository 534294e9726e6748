"""How jobs look in Discord: status lines, result captions, files that fit the guild's upload limit.

Public posts speak the guild's language, stored with the job (LOCALE_KEY in its `extra`) when it was asked for,
so that whichever process delivers it later writes the same language; English when none was stored."""

from __future__ import annotations

import asyncio
import dataclasses
import io
from datetime import UTC, datetime

import discord
from PIL import Image

from bot.blobs import Blobs
from bot.i18n import N_, translate
from bot.i18n.formats import duration, percent
from bot.images import extension_for, full_decode
from bot.providers.status import JobStatus, Queued, Running
from bot.store.models import LOCALE_KEY, MEMBER_LOCALE_KEY, Job, JobState

OPERATION_NAMES = {"tryon": N_("Try-on"), "filter": N_("Filter"), "edit": N_("Edit"), "imagine": N_("Imagine")}
# As a caption names them mid-sentence ("your **try-on** is ready"): a language may not simply lowercase the above.
# A job's state as members read it (/jobs, /show, a result's buttons).
STATE_NAMES = {"pending": N_("pending"), "submitting": N_("submitting"), "queued": N_("queued"),
               "running": N_("running"), "fetching": N_("fetching"), "succeeded": N_("succeeded"),
               "failed": N_("failed"), "cancelled": N_("cancelled")}
OPERATION_NOUNS = {"tryon": N_("try-on"), "filter": N_("filter"), "edit": N_("edit"), "imagine": N_("imagine")}
SIZE_CHOICES = {
    "square_hd": N_("Square HD (1:1)"), "square": N_("Square (1:1)"), "portrait_4_3": N_("Portrait 3:4"),
    "portrait_16_9": N_("Portrait 9:16"), "landscape_4_3": N_("Landscape 4:3"), "landscape_16_9": N_("Landscape 16:9"),
}
MAX_CONTENT = 1900  # Discord's limit is 2,000 characters; keep room for mentions


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def locale_of(job: Job) -> str | None:
    """The language of the job's public posts: its guild's, as Discord named it when the job was asked for."""
    locale = job.extra.get(LOCALE_KEY)
    return locale if isinstance(locale, str) else None


def as_its_member_reads(job: Job) -> Job:
    """The job as what is said to its member alone (a direct message) renders it: in the language of their client
    when they asked, where one is stored (a reaction carries none: then the server's, like its public posts)."""
    member = job.extra.get(MEMBER_LOCALE_KEY)
    if not isinstance(member, str) or not member:
        return job
    return dataclasses.replace(job, extra={**job.extra, LOCALE_KEY: member})


def operation_name(job: Job) -> str:
    name = OPERATION_NAMES.get(job.operation)
    return translate(locale_of(job), name) if name else job.operation


def parameters(job: Job) -> str:
    """The request's parameters a member cares about, in one line."""
    r = job.request
    locale = locale_of(job)
    parts: list[str] = []
    if r.get("prompt"):
        parts.append(f"“{clip(discord.utils.escape_markdown(r['prompt']), 300)}”")
    if r.get("name"):  # filter names stay as their providers call them
        parts.append(translate(locale, "filter {name}", name=f"**{discord.utils.escape_markdown(r['name'])}**"))
    if r.get("mask"):
        parts.append(translate(locale, "mask {mask}", mask=r["mask"]))
    if r.get("size"):
        label = SIZE_CHOICES.get(r["size"])
        parts.append(translate(locale, label) if label else r["size"])
    if job.seed is not None:
        parts.append(translate(locale, "seed {seed}", seed=job.seed))
    return " · ".join(parts)


def elapsed(job: Job, now: datetime | None = None) -> str:
    end = job.finished_at or now or datetime.now(UTC)
    return duration(locale_of(job), max(0, int((end - job.created_at).total_seconds())))


def status_title(job: Job) -> str:
    """How a job's public status message begins (for people: the bot finds its messages by the job's token)."""
    return f"**{translate(locale_of(job), '{operation} · job #{id}', operation=operation_name(job), id=job.id)}**"


def _state_line(job: Job, status: JobStatus | None, place: int | None) -> str:
    locale, provider = locale_of(job), job.provider
    if job.state is JobState.PENDING:
        what = translate(locale, "⏳ waiting for a slot at {provider}", provider=provider)
        return what + (translate(locale, " — place {place} in line", place=place) if place else "")
    if isinstance(status, Queued) or job.state is JobState.QUEUED:
        position = status.position if isinstance(status, Queued) else job.queue_position
        what = translate(locale, "🕒 queued at {provider}", provider=provider)
        return what + (translate(locale, " — position {position}", position=position) if position is not None else "")
    if isinstance(status, Running) or job.state is JobState.RUNNING:
        progress = status.progress if isinstance(status, Running) else job.progress
        what = translate(locale, "🎨 running at {provider}", provider=provider)
        return what + (f" — {percent(locale, progress)}" if progress is not None else "")
    if job.state is JobState.SUBMITTING:
        return translate(locale, "📡 sending to {provider}", provider=provider)
    if job.state is JobState.FETCHING:
        return translate(locale, "📡 collecting images from {provider}", provider=provider)
    if job.state is JobState.SUCCEEDED:
        return translate(locale, "✅ done")
    if job.state is JobState.CANCELLED:
        return translate(locale, "🚫 cancelled")
    return translate(locale, "❌ failed")


def status_line(job: Job, status: JobStatus | None = None, place: int | None = None) -> str:
    head = translate(locale_of(job), "{title} for {member}", title=status_title(job),
                     member=f"<@{job.subject.user_id}>")
    # " · " before the time counter is the code's, in every language: bot/_delivery's without_elapsed splits on it.
    return clip(f"{head}\n{parameters(job)}\n{_state_line(job, status, place)} · {elapsed(job)}", MAX_CONTENT)


def result_caption(job: Job) -> str:
    noun = OPERATION_NOUNS.get(job.operation)
    head = translate(locale_of(job), "{member} your **{operation}** is ready · job #{id}",
                     member=f"<@{job.subject.user_id}>", id=job.id,
                     operation=translate(locale_of(job), noun) if noun else job.operation.lower())
    return clip(f"{head}\n{parameters(job)}\n{job.provider} · {elapsed(job)}", MAX_CONTENT)


def nsfw_caption(job: Job) -> str:
    return translate(locale_of(job), "{member} job #{id} finished, but the provider flagged the image as NSFW, so it "
                     "is only posted in age-restricted channels. Use 🔄 to try again.",
                     member=f"<@{job.subject.user_id}>", id=job.id)


def failure_caption(job: Job) -> str:
    locale = locale_of(job)
    reason = discord.utils.escape_markdown(job.error_message or translate(locale, "the provider gave no reason"))
    said = N_("{member} job #{id} was cancelled: {reason}.") if job.state is JobState.CANCELLED \
        else N_("{member} job #{id} failed: {reason}.")
    head = translate(locale, said, member=f"<@{job.subject.user_id}>", id=job.id, reason=clip(reason, 600))
    refund = translate(locale, " Nothing was charged to your quota.") if job.refunded else ""
    return clip(f"{head}{refund}\n{parameters(job)}", MAX_CONTENT)


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
