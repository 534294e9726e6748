"""The store interface. Callers depend on this, never on SQL, so a PostgreSQL store can be added later."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from bot.money.caps import CapState
from bot.store.models import (
    Delivery,
    DiscordPost,
    Forgotten,
    Job,
    JobSpend,
    JobState,
    MemberPrefs,
    NewJob,
    Origin,
    PostKind,
    QuotaLimits,
    QuotaUsage,
    SpendRow,
    StoredOutput,
    Subject,
)


class JobStore(Protocol):
    # The time of writes whose caller passes no `now`.
    clock: Callable[[], datetime]
    # True when processes on other hosts share this store (bot.store.base.SharedJobStore), so that what one
    # process keeps in memory (provider slots, webhook calls) must go through the store instead.
    shared: bool

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """One round trip to the database (for /readyz); raises when it cannot be reached."""

    async def join(self, owner: str, *, host: str, pid: int) -> None:
        """This process works jobs as `owner` from now on: a shared store notices when it dies."""

    # --- jobs --------------------------------------------------------------------------------------------
    async def create_job(self, new: NewJob, *, defaults: QuotaLimits, now: datetime) -> Job:
        """Check the subject's quota and insert the job in ONE transaction (raises bot.errors.QuotaError)."""

    async def get_job(self, job_id: int) -> Job | None: ...

    async def job_by_message(self, message_id: int | str) -> Job | None:
        """The job one of whose recorded Discord posts (status, result, DM) is this message."""

    async def job_by_token(self, token: str) -> Job | None:
        """The job with this public identity (Job.token), which buttons and posts carry."""

    async def list_jobs(self, subject: Subject | None = None, *, limit: int = 20,
                        states: Sequence[JobState] | None = None) -> list[Job]:
        """Newest first. subject=None lists every subject (operator views)."""

    async def update_job(self, job_id: int, *, now: datetime, **fields: Any) -> Job:
        """Write the named columns (state, handle, queue_position, progress, attempts, outputs, seed,
        error_code, error_message, charged, message_id, submitted_at, finished_at,
        channel_id, extra) and bump updated_at. Returns the updated job."""

    async def transition(self, job_id: int, to: JobState, *, now: datetime, **fields: Any) -> Job | None:
        """Move the job to `to` and write `fields` as update_job does, in one compare-and-set step checked against
        bot.store.states.TRANSITIONS. Returns None when the move lost a race (the job ended first, or the same
        move was already made); raises IllegalTransitionError for a move the table forbids, KeyError for an
        unknown job. Setting a terminal state also sets finished_at = now when it is empty."""

    async def refund(self, job_id: int, *, now: datetime) -> bool:
        """Give the job's cost back (once). True when this call refunded it."""

    async def settle_cost(self, job_id: int, *, images: int, now: datetime) -> bool:
        """Charge the job `images` (bot.store.refunds.images_charged): its cost is lowered to that, never raised,
        and 0 refunds it in full (`refund`). Applying it again changes nothing. True when this call changed it."""

    # --- quotas ------------------------------------------------------------------------------------------
    async def usage(self, subject: Subject, *, defaults: QuotaLimits, now: datetime) -> QuotaUsage: ...

    async def scope_usage(self, scope: str, *, now: datetime | None = None) -> list[tuple[str, int, int]]:
        """(user_id, images used today, jobs created today) for every user active today in a scope."""

    async def set_limit(self, scope: str, kind: str, subject_id: str, *, daily: int | None,
                        concurrent: int | None) -> None:
        """kind: "member" (a user in a scope), "role", or "scope" (the guild's default; subject_id "")."""

    async def clear_limit(self, scope: str, kind: str, subject_id: str) -> None: ...

    # --- leases: one process works a job at a time ------------------------------------------------------
    async def claim(self, job_id: int, owner: str, *, host: str, pid: int, now: datetime,
                    lease_s: float) -> bool:
        """Take the job's lease if free, lapsed, ours already, or its owner is on this host and dead."""

    async def claimable(self, origins: Sequence[Origin], *, now: datetime, host: str,
                        limit: int = 500) -> list[Job]:
        """Non-terminal jobs (or terminal ones with a pending delivery) whose lease is free, lapsed, or held
        by a process on this host that no longer exists."""

    async def renew_leases(self, owner: str, *, now: datetime, lease_s: float) -> int: ...

    async def release(self, job_id: int, owner: str) -> None: ...

    # --- the delivery outbox ----------------------------------------------------------------------------
    async def enqueue_delivery(self, job_id: int, target: str, *, now: datetime) -> None:
        """Idempotent: a second call for the same job and target does nothing."""

    async def due_deliveries(self, *, now: datetime, targets: Sequence[str], limit: int = 100) -> list[Delivery]:
        """Pending deliveries of finished jobs whose next attempt is due, oldest first."""

    async def delivery_failed(self, job_id: int, target: str, *, error: str, next_attempt_at: datetime) -> int:
        """Count a failed attempt of a pending delivery; returns the attempts failed so far (0: none pending)."""

    async def give_up_delivery(self, job_id: int, target: str, *, error: str, now: datetime) -> bool:
        """Mark a pending delivery undeliverable: it is never tried again, and the job reads `undeliverable`.
        False if it was not pending (delivered meanwhile, or given up already)."""

    async def delivery_done(self, job_id: int, target: str, *, now: datetime) -> bool:
        """Mark delivered. False if it was already done (someone else delivered it). Records the delivery
        even if it was never enqueued."""

    async def is_delivered(self, job_id: int, target: str) -> bool: ...

    # --- the slash commands as last published ---------------------------------------------------------------
    async def sync_commands_once(self, scope: str, digest: str, publish: Callable[[], Awaitable[None]]) -> bool:
        """Run `publish()` unless the commands of `scope` ("global", "guild:<id>") were last published as
        `digest`, and record it; True when it published. Processes sharing the store publish each scope once."""

    # --- per-guild settings chosen by a guild's administrators -------------------------------------------
    async def guild_settings(self, guild_id: int | str) -> dict[str, Any]: ...

    async def set_guild_setting(self, guild_id: int | str, key: str, value: Any, *,
                                now: datetime | None = None) -> None: ...

    async def clear_guild_setting(self, guild_id: int | str, key: str) -> bool: ...

    # --- the Discord posts of each job (status, result, DM, re-posts) -------------------------------------
    async def open_post(self, job_id: int, kind: PostKind, *,
                        channel_id: int | str | None) -> tuple[DiscordPost, bool]:
        """The job's unsettled post of this kind, or a new one (True) with a fresh nonce; written before posting."""

    async def record_post(self, post_id: int, *, message_id: int | str | None, channel_id: int | str | None = None,
                          note: str | None = None, in_guild: bool = True) -> DiscordPost:
        """Settle a post: the message Discord made (a guild result becomes Job.message_id), or a note why none."""

    async def posts_of(self, job_id: int) -> list[DiscordPost]: ...

    async def post_by_message(self, message_id: int | str) -> DiscordPost | None: ...

    # --- housekeeping ------------------------------------------------------------------------------------
    async def prunable_outputs(self, *, finished_before: datetime) -> list[tuple[int, StoredOutput]]:
        """Kept outputs of jobs finished before the cutoff and owed no delivery."""

    async def blobs_in_use(self, sha256s: Sequence[str], *, finished_before: datetime) -> set[str]:
        """Which of these blobs a job that pruning leaves alone still uses (an input, or a kept output): one
        unfinished, finished at or after the cutoff, or owed a delivery. Blobs are shared by content."""

    async def mark_outputs_pruned(self, job_id: int) -> None: ...

    # --- models found retired at a provider ----------------------------------------------------------------
    async def mark_retired(self, provider: str, model: str, *, reason: str, now: datetime,
                           until: datetime) -> bool:
        """Mark the model gone until `until` (for every process on this store). True when no live mark
        existed before, so that exactly one caller tells the operator."""

    async def retired_until(self, provider: str, model: str, *, now: datetime) -> datetime | None:
        """When the live mark of this model expires; None when it is not marked."""

    # --- money: spend caps and usage in dollars, in integer micro-dollars --------------------------
    async def spend_caps(self, scope: str, user_id: str, *, install_daily_micro: int | None,
                         now: datetime) -> list[CapState]:
        """Every spend cap on a job of `user_id` in `scope` (the install's, the guild's daily and monthly, the
        member's daily), with what its period has spent so far. `create_job` checks the same figures."""

    async def job_spend(self, job_id: int) -> JobSpend | None: ...

    async def settle_spend(self, job_id: int, *, images: int, reserved_micro: int, member_micro: int,
                           provider: str, now: datetime) -> bool:
        """Settle a job's money (bot.money.estimate.settle): only ever lowers it, once. True when this call did."""

    async def claim_spend_notice(self, scope: str, cap: str, *, period_start: datetime, now: datetime) -> bool:
        """True for the first caller only, per scope, cap and period: who tells the admins about 80%."""

    async def spend_report(self, scope: str | None, *, since: datetime, until: datetime) -> list[SpendRow]:
        """Spend by UTC day, scope, member, operation and provider (scope None: every scope)."""

    # --- members' own: preferences, a saved photo, being forgotten (sqlite: bot/store/sqlite_members.py) ---

    async def member_prefs(self, user_id: str) -> MemberPrefs:
        """The user's saved preferences; MemberPrefs(user_id) (every default) when they saved none."""

    async def save_member_prefs(self, prefs: MemberPrefs, *, now: datetime) -> None:
        """Replace the user's preferences with `prefs`: one row per user id, inserted or overwritten whole."""

    async def images_referenced(self, sha256s: Sequence[str]) -> set[str]:
        """Those of the sha256s that some row still references — any job's request, extra or outputs (whatever
        its age), any user's saved photo: an image not among them is no one's any more."""

    async def child_jobs(self, parent_job_id: int) -> list[Job]:
        """The jobs made from this one (parent_job_id = it: retries, remixes, an outfit's second step), oldest
        first."""

    async def forget_member(self, user_id: str, *, now: datetime) -> Forgotten | None:
        """Forget everything that identifies a user, in one transaction; None (nothing changed) while any job of
        theirs (any scope) is unfinished or owed a delivery.

        - their preferences row (and so their saved photo's reference) is deleted;
        - the Discord posts of their jobs are deleted (a DM post names their DM channel), and their quota overrides
          (quota_limits rows of kind 'member' with their id, in every scope);
        - every job of theirs keeps its row, its scope, operation, provider, state, cost, dates and token (quotas
          and job numbers stay true) with user_id FORGOTTEN_USER, request reduced to {"operation": ...}, outputs
          [], seed, error message, channel, message and lease NULL, extra {};
        - their job_spend rows keep every amount, scope and date with user_id FORGOTTEN_USER (caps and usage in
          dollars stay true).

        Returns the counts and the sha256s those rows referenced (request inputs, outputs, image references in
        `extra` such as an outfit's second garment, the saved photo) that
        no job left and no other user's preferences still reference: the images the caller may delete."""


class SharedJobStore(JobStore, Protocol):
    """What a store shared by processes on many hosts (PostgreSQL) adds, for the runner to coordinate them."""

    async def claim_batch(self, origins: Sequence[Origin], owner: str, *, host: str, pid: int, lease_s: float,
                          limit: int) -> list[int]:
        """Take the leases of up to `limit` owed jobs that no live process holds; their ids."""

    async def take_slot(self, job_id: int, provider: str, *, capacity: int, attempts: int,
                        now: datetime) -> Job | int | None:
        """The pending job moved to SUBMITTING holding one of the provider's `capacity` slots (a Job), or its
        place in the shared line (an int), or None when it is no longer pending."""

    async def leave_line(self, job_id: int) -> None: ...

    async def live_processes(self) -> int: ...

    def subscribe(self, channel: str, callback: Callable[[str], None]) -> None: ...

    def on_reconnect(self, callback: Callable[[], None]) -> None: ...

    async def announce_free_work(self) -> None: ...

    async def record_webhook(self, provider: str, remote_id: str, *, verified: bool,
                             outcome: dict[str, Any] | None = None) -> None:
        """Keep a call (and its verified outcome, bot.webhooks.outcomes) for whichever process follows the job."""

    async def webhook_outcome(self, call_id: int) -> dict[str, Any] | None: ...

    async def webhooks_after(self, after_id: int, *,
                             limit: int = 1000) -> list[tuple[int, str, str, bool, dict[str, Any] | None]]: ...

    async def newest_webhook_id(self, *, received_before: datetime) -> int: ...

    async def prune_webhooks(self, *, received_before: datetime) -> int: ...

    async def prune_processes(self) -> int: ...

    async def claim_shards(self, shard_count: int, ranges: Sequence[Sequence[int]]) -> tuple[int, ...] | None:
        """The first of `ranges` no live process serves, claimed by this one (or the one it holds); None when
        every range is served."""

    async def shard_claims(self) -> list[tuple[int, tuple[int, ...], str, bool]]: ...

    async def take_identify_turn(self, bucket: int, interval_s: float) -> float:
        """0 when this process may IDENTIFY in `bucket` now (the turn is taken), else the seconds to wait."""


def shared(store: JobStore) -> SharedJobStore | None:
    """The store as a SharedJobStore when processes on other hosts share it; else None."""
    return store if store.shared else None  # type: ignore[return-value]


__all__ = ["Delivery", "DiscordPost", "Job", "JobState", "JobStore", "NewJob", "Origin", "PostKind", "QuotaLimits",
           "QuotaUsage", "SharedJobStore", "StoredOutput", "Subject", "shared"]
