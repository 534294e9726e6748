"""The engine as the Discord layer sees it: one object with narrow methods, the only door from cogs/ into the runner,
the store, the providers and the blobs.

It knows nothing of Discord (ids are plain strings and ints; a "post" is a message some receiver made for a job);
what it gives the cogs is exactly what they may do, so nothing Discord-side writes columns or SQL-shaped dicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from bot import members
from bot.app import App
from bot.blobs import Blobs
from bot.images import ImageLimits
from bot.jobs import Deliverer, Listener, Prepare
from bot.money.caps import BUDGET_KEY, CHEAPEST, CapState, GuildBudget, day_bounds, month_bounds, reached_notice_share
from bot.operations import ImageInput, Operation, Request, TryonRequest
from bot.providers.base import FilterInfo
from bot.providers.registry import KNOWN
from bot.rules.blocklist import Blocklist, load_file
from bot.store.models import (
    LOCALE_KEY,
    MEMBER_LOCALE_KEY,
    OUTFIT_KEY,
    OUTFIT_STEP_KEY,
    PRIVATE_DELIVERY_KEY,
    DiscordPost,
    Forgotten,
    Job,
    JobState,
    MemberPrefs,
    Origin,
    PhotoRef,
    PostKind,
    QuotaLimits,
    QuotaUsage,
    SpendRow,
    Subject,
)


class Engine:
    def __init__(self, app: App) -> None:
        self._app = app
        path = app.settings.prompt_blocklist_file.strip()
        # Read once at start: a bad entry stops the start (ConfigError), never silently shortens the list.
        self._install_blocklist = load_file(Path(path)) if path else Blocklist()

    # --- what the cogs need to know ---------------------------------------------------------------------------

    @property
    def image_limits(self) -> ImageLimits:
        return self._app.settings.image_limits

    @property
    def default_limits(self) -> QuotaLimits:
        return self._app.runner.defaults

    @property
    def blobs(self) -> Blobs:
        return self._app.blobs

    async def filters(self) -> list[FilterInfo]:
        return await self._app.providers.filters()

    def providers_for(self, operation: Operation) -> set[str]:
        """The configured providers that offer `operation`."""
        return {p.name for p in self._app.providers.order(operation, list(KNOWN))}

    # --- jobs --------------------------------------------------------------------------------------------------

    async def start(self, subject: Subject, request: Request, *, channel_id: str,
                    preferred: Sequence[str] | None, prepare: Prepare, withhold_nsfw: bool,
                    private: bool = False, parent_job_id: int | None = None,
                    extra: Mapping[str, Any] | None = None, locale: str | None = None,
                    member_locale: str | None = None) -> Job:
        """Record and charge a job from Discord, run `prepare(job)` (its status post), then start it.
        `withhold_nsfw`: its channel will not show an image flagged NSFW, so such a result is not charged.
        `private`: its result goes to the member by direct message instead of the channel. `parent_job_id`: the
        job whose result it was made from. `locale`: the guild's, which the job's public posts speak; `member_locale`:
        the member's client's, which a direct message to them speaks."""
        preferred = self._resolve_order(request.operation.value, preferred)  # "cheapest first"
        return await self._app.runner.create(subject, Origin.DISCORD, request, preferred=preferred,
                                             channel_id=channel_id, prepare=prepare, withhold_nsfw=withhold_nsfw,
                                             extra={**(extra or {}), **_private(private),
                                                    **_locale(locale, member_locale)},
                                             parent_job_id=parent_job_id)

    async def rerun(self, original: Job, subject: Subject, *, vary: bool, channel_id: str,
                    preferred: Sequence[str] | None, prepare: Prepare, withhold_nsfw: bool,
                    changes: Mapping[str, Any] | None = None, private: bool = False,
                    locale: str | None = None, member_locale: str | None = None) -> Job:
        """Retry, vary or remix `original` as `subject`'s new job (its child). `changes`: the request's fields the
        member changed (Remix), validated like a new job's."""
        preferred = self._resolve_order(original.operation, preferred)  # "cheapest first"
        return await self._app.runner.rerun(original.id, subject, vary=vary, channel_id=channel_id,
                                            preferred=preferred, prepare=prepare, withhold_nsfw=withhold_nsfw,
                                            changes=changes,
                                            extra={**_private(private), **_locale(locale, member_locale)})

    async def continue_outfit(self, first: Job, *, prepare: Prepare) -> Job:
        """An outfit's second step, once its first has succeeded: the second garment tried on the first step's
        result, as the same member's job (charged its own image), its child. Raises like any new job (a quota, a
        cap) — then the first step's result is the member's."""
        spec = first.extra[OUTFIT_KEY]
        made = first.outputs[0]
        person = ImageInput(data=await self._app.blobs.get(made.sha256), mime=made.mime, width=made.width,
                            height=made.height, filename="outfit-step-1", sha256=made.sha256)
        ref = spec["garment"]
        garment = ImageInput(data=await self._app.blobs.get(ref["sha256"]), mime=ref["mime"], width=ref["width"],
                             height=ref["height"], filename=ref.get("filename") or "garment", sha256=ref["sha256"])
        request = TryonRequest(person=person, garment=garment, mask=spec["mask"])
        extra: dict[str, Any] = {OUTFIT_STEP_KEY: 2, **_private(first.private_delivery),
                                 **_locale(first.extra.get(LOCALE_KEY), first.extra.get(MEMBER_LOCALE_KEY))}
        return await self._app.runner.create(first.subject, Origin.DISCORD, request, provider=first.provider,
                                             channel_id=first.channel_id, parent_job_id=first.id, extra=extra,
                                             prepare=prepare, withhold_nsfw=first.withhold_nsfw)

    async def child_jobs(self, job_id: int) -> list[Job]:
        return await self._app.store.child_jobs(job_id)

    async def keep_image(self, image: ImageInput) -> dict[str, Any]:
        """Store an image by its content; the reference a job's `extra` may keep (an outfit's second garment)."""
        photo = await members.keep_photo(self._app.blobs, image)
        return {"sha256": photo.sha256, "mime": photo.mime, "width": photo.width, "height": photo.height,
                "filename": photo.filename}

    async def cancel(self, job_id: int, subject: Subject) -> Job:
        return await self._app.runner.cancel(job_id, subject)

    async def usage(self, subject: Subject) -> QuotaUsage:
        return await self._app.runner.usage(subject)

    async def jobs_of(self, subject: Subject, *, limit: int, states: Sequence[JobState] | None = None) -> list[Job]:
        return await self._app.store.list_jobs(subject, limit=limit, states=states)

    async def job(self, job_id: int) -> Job | None:
        return await self._app.store.get_job(job_id)

    async def job_by_token(self, token: str) -> Job | None:
        return await self._app.store.job_by_token(token)

    async def job_for_message(self, message_id: int) -> Job | None:
        """The job one of whose recorded posts is this message (a reaction or a button on it acts on that job)."""
        return await self._app.store.job_by_message(message_id)

    # --- the posts that show jobs ------------------------------------------------------------------------------

    async def open_post(self, job_id: int, kind: PostKind, *, channel_id: int | str | None) -> tuple[DiscordPost, bool]:
        return await self._app.store.open_post(job_id, kind, channel_id=channel_id)

    async def record_post(self, post_id: int, *, message_id: int | None, channel_id: int | None = None,
                          note: str | None = None, in_guild: bool = True) -> DiscordPost:
        return await self._app.store.record_post(post_id, message_id=message_id, channel_id=channel_id, note=note,
                                                 in_guild=in_guild)

    async def posts_of(self, job_id: int) -> list[DiscordPost]:
        return await self._app.store.posts_of(job_id)

    async def received_nothing(self, job: Job) -> None:
        """The receiver could show none of the job's images (withheld as NSFW where they went, or no channel and
        no DM would take them): the member is charged nothing for it, in images or money (bot.store.refunds)."""
        await self._app.runner.received_nothing(job)

    # --- a guild's own settings --------------------------------------------------------------------------------

    async def guild_settings(self, guild_id: int) -> dict[str, Any]:
        return await self._app.store.guild_settings(guild_id)

    async def set_guild_setting(self, guild_id: int, key: str, value: object) -> None:
        await self._app.store.set_guild_setting(guild_id, key, value)

    async def set_limit(self, scope: str, kind: str, subject_id: str, *, daily: int | None,
                        concurrent: int | None) -> None:
        await self._app.store.set_limit(scope, kind, subject_id, daily=daily, concurrent=concurrent)

    async def scope_usage(self, scope: str) -> list[tuple[str, int, int]]:
        return await self._app.store.scope_usage(scope)

    # --- wiring: who delivers Discord jobs, who hears their progress ------------------------------------------

    def serve(self, deliverer: Deliverer, listener: Listener) -> None:
        self._app.runner.deliverers[Origin.DISCORD.value] = deliverer
        self._app.runner.add_listener(listener)

    def unserve(self, listener: Listener) -> None:
        self._app.runner.deliverers.pop(Origin.DISCORD.value, None)
        self._app.runner.remove_listener(listener)

    # --- money: prices, budgets, spend -------------------------------------------------------------------------

    async def spend_caps(self, subject: Subject) -> list[CapState]:
        return await self._app.runner.spend_caps(subject)

    async def reserved_cost(self, job_id: int) -> int:
        """The job's cost in micro-dollars as counted against the caps: its worst case while it runs, what it
        settled to once it ended (0: a free or unpriced job)."""
        spend = await self._app.store.job_spend(job_id)
        return spend.reserved_micro if spend is not None else 0

    async def budget(self, guild_id: int) -> GuildBudget:
        return GuildBudget.from_setting((await self._app.store.guild_settings(guild_id)).get(BUDGET_KEY))

    async def set_budget(self, guild_id: int, budget: GuildBudget) -> None:
        await self._app.store.set_guild_setting(guild_id, BUDGET_KEY, budget.to_setting())

    async def due_budget_notices(self, subject: Subject) -> list[CapState]:
        """The guild caps that stand at 80% or more and whose admins have not been told yet in this period; each
        is returned to one caller only (across processes), who tells them."""
        due: list[CapState] = []
        now = self._app.runner.clock()
        for cap in await self.spend_caps(subject):
            if cap.name not in ("guild_daily", "guild_monthly") or not reached_notice_share(cap):
                continue
            period = month_bounds(now)[0] if cap.name == "guild_monthly" else day_bounds(now)[0]
            if await self._app.store.claim_spend_notice(subject.scope, cap.name, period_start=period, now=now):
                due.append(cap)
        return due

    async def spend_report(self, guild_id: int, *, since: datetime) -> list[SpendRow]:
        until = day_bounds(self._app.runner.clock())[1]
        return await self._app.store.spend_report(f"guild:{guild_id}", since=since, until=until)

    def cheapest_order(self, operation: Operation) -> list[str]:
        """The configured providers of `operation`, cheapest first (by one image's worst case; ties keep the
        default order)."""
        able = self._app.providers.order(operation)
        return [p.name for p in sorted(able, key=lambda p: self._app.runner.price(p.name, operation.value)
                                       .image_micro(None))]

    def _resolve_order(self, operation: str, preferred: Sequence[str] | None) -> Sequence[str] | None:
        if preferred is not None and list(preferred) == [CHEAPEST]:
            return self.cheapest_order(Operation(operation))
        return preferred

    # --- what members keep for themselves --------------------------------------------------------------------

    async def member_prefs(self, user_id: int | str) -> MemberPrefs:
        return await self._app.store.member_prefs(str(user_id))

    async def save_member_prefs(self, prefs: MemberPrefs) -> None:
        """Save the member's preferences; a saved photo they replaced or cleared is deleted unless something else
        (a job of anyone's, another member's photo) uses the same image."""
        now = self._app.runner.clock()
        before = await self._app.store.member_prefs(prefs.user_id)
        await self._app.store.save_member_prefs(prefs, now=now)
        old = before.photo.sha256 if before.photo is not None else None
        if old is not None and (prefs.photo is None or prefs.photo.sha256 != old) and \
                not await self._app.store.images_referenced([old]):
            await self._app.blobs.delete_unless_written_since(old, now)

    async def keep_photo(self, image: ImageInput) -> PhotoRef:
        return await members.keep_photo(self._app.blobs, image)

    async def photo_image(self, photo: PhotoRef) -> ImageInput | None:
        return await members.photo_image(self._app.blobs, photo)

    async def forget(self, user_id: int | str) -> Forgotten | None:
        """Forget everything that identifies the user (bot.members.forget); None while a job of theirs runs."""
        return await members.forget(self._app.store, self._app.blobs, str(user_id), clock=self._app.runner.clock)

    # --- owners' rules -----------------------------------------------------------------------------------------

    @property
    def allowed_guilds(self) -> frozenset[int]:
        """DISCORD_ALLOWED_GUILDS: the guilds this install serves (empty: every guild)."""
        return self._app.settings.allowed_guilds

    @property
    def leave_other_guilds(self) -> bool:
        return self._app.settings.discord_leave_other_guilds

    @property
    def install_blocklist(self) -> Blocklist:
        """PROMPT_BLOCKLIST_FILE's entries, for every guild."""
        return self._install_blocklist

    async def clear_guild_setting(self, guild_id: int, key: str) -> bool:
        return await self._app.store.clear_guild_setting(guild_id, key)


def _private(private: bool) -> dict[str, Any]:
    return {PRIVATE_DELIVERY_KEY: True} if private else {}


def _locale(locale: str | None, member_locale: str | None = None) -> dict[str, Any]:
    return {**({LOCALE_KEY: locale} if locale else {}), **({MEMBER_LOCALE_KEY: member_locale} if member_locale else {})}

