"""What the store holds: jobs, their states, quota figures. Plain values; no SQL here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from bot.operations import Operation
from bot.providers.status import RemoteHandle


class JobState(StrEnum):
    PENDING = "pending"  # recorded and charged; nothing sent yet (waiting for a provider slot)
    SUBMITTING = "submitting"  # the submit may be on the wire; if we die here we cannot know: never resend
    QUEUED = "queued"  # the provider has it (handle stored) and says it is queued
    RUNNING = "running"  # the provider says it is running
    FETCHING = "fetching"  # the provider finished; outputs being downloaded
    SUCCEEDED = "succeeded"  # outputs stored locally
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
IN_FLIGHT_STATES = frozenset(set(JobState) - TERMINAL_STATES)


class Origin(StrEnum):
    DISCORD = "discord"
    CLI = "cli"


class DeliveryState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    UNDELIVERABLE = "undeliverable"  # given up after DELIVERY_MAX_ATTEMPTS failed attempts


@dataclass(frozen=True, slots=True)
class Subject:
    """Who a job belongs to and whose quota it counts against.

    A Discord member's usage counts per guild (scope "guild:<id>"); command-line users have their own
    namespace (scope "cli"). role_ids are the member's roles, for role allowances; they are not stored (roles
    change), so a Job read back has role_ids == () and must be compared by scope and user_id only.
    """

    scope: str
    user_id: str
    role_ids: tuple[str, ...] = ()

    @classmethod
    def cli(cls, user: str) -> Subject:
        return cls(scope="cli", user_id=user)

    @classmethod
    def member(cls, guild_id: int | str, user_id: int | str, role_ids: tuple[str, ...] = ()) -> Subject:
        return cls(scope=f"guild:{guild_id}", user_id=str(user_id), role_ids=role_ids)


@dataclass(frozen=True, slots=True)
class StoredOutput:
    """One finished image: where the provider had it, and our local copy (content-addressed)."""

    sha256: str
    mime: str
    width: int
    height: int
    provider_url: str | None = None
    nsfw: bool = False
    path: str | None = None  # None once pruned after RETENTION_DAYS


@dataclass(frozen=True, slots=True)
class NewJob:
    subject: Subject
    origin: Origin
    operation: Operation
    request: dict[str, Any]  # the full validated request, images as {"sha256", "mime", ...} references
    provider: str
    cost: int  # images reserved against the daily quota (what was asked for)
    channel_id: str | None = None
    parent_job_id: int | None = None
    deadline_s: float = 600.0
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Written in the same transaction as the job, so no other process can adopt it before its creator starts it,
    # and a delivery is owed from the first moment (a crash can never leave a finished job with nobody owing it).
    lease: Lease | None = None
    delivery_target: str | None = None
    # The result will be withheld if the provider flags an image NSFW (a Discord channel that is not
    # age-restricted), so such a result is not charged. Kept in `extra` (WITHHOLD_NSFW_KEY): see Job.
    withhold_nsfw: bool = False
    # Its worst-case cost in money, checked against the spend caps with the quota (bot.money); None: not priced.
    spend: SpendReservation | None = None


@dataclass(frozen=True, slots=True)
class Lease:
    owner: str
    host: str
    pid: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    subject: Subject
    origin: Origin
    operation: Operation
    request: dict[str, Any]
    provider: str
    state: JobState
    # Images charged: what was asked for, lowered to what the member got once the job ends (bot.store.refunds);
    # a job that gave everything back keeps its cost and reads `refunded`.
    cost: int
    created_at: datetime
    updated_at: datetime
    deadline_at: datetime
    handle: RemoteHandle | None = None  # where the job is at its provider, once it was sent
    queue_position: int | None = None
    progress: float | None = None
    attempts: int = 0
    outputs: tuple[StoredOutput, ...] = ()
    seed: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    charged: bool | None = None  # None: unknown, the provider may have charged
    refunded: bool = False
    parent_job_id: int | None = None
    channel_id: str | None = None
    message_id: str | None = None  # the job's public message, once the Discord layer posts it
    submitted_at: datetime | None = None
    finished_at: datetime | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The job's public identity: random, unique across installations (row ids start at 1 in every database).
    # What buttons and posts carry; the row id is only ever shown to people.
    token: str = ""
    # Delivery was given up after DELIVERY_MAX_ATTEMPTS failed attempts (read from the outbox).
    undeliverable: bool = False

    @property
    def withhold_nsfw(self) -> bool:
        """Written into `extra` once, at creation; every writer of `extra` copies the job's own, so it stays."""
        return bool(self.extra.get(WITHHOLD_NSFW_KEY))

    @property
    def private_delivery(self) -> bool:
        """Written into `extra` at creation from the member's preferences (results by DM)."""
        return bool(self.extra.get(PRIVATE_DELIVERY_KEY))


WITHHOLD_NSFW_KEY = "withhold_nsfw"
# In `extra`: the Discord locale of the job's guild when it was asked for; its public posts speak that language.
LOCALE_KEY = "locale"
# In `extra`: the Discord locale of the member's client when they asked (absent for a reaction, which carries none);
# what reaches them alone, a result by direct message, speaks that language.
MEMBER_LOCALE_KEY = "member_locale"
PRIVATE_DELIVERY_KEY = "private_delivery"  # in `extra`: the member's result goes by direct message, not the channel
# An outfit is two try-on jobs: the first's `extra` holds what the second needs ({"garment": image reference,
# "mask": ...}); the second's `extra` says it is step 2. The first's result is the second's person photo.
OUTFIT_KEY = "outfit"
OUTFIT_STEP_KEY = "outfit_step"


class PostKind(StrEnum):
    STATUS = "status"  # the public message that shows a job's progress
    RESULT = "result"  # the result in the job's channel (a re-post is another row)
    DM = "dm"  # the result sent to the member directly


@dataclass(frozen=True, slots=True)
class DiscordPost:
    """One message the Discord layer posts (or tried to post) for a job. Recorded before it is sent: a post without
    a message_id is being posted, or its sender died before recording what Discord answered."""

    id: int
    job_id: int
    kind: PostKind
    nonce: str  # sent with the post so Discord drops a repeat; unique across installations, at most 25 chars
    created_at: datetime
    channel_id: str | None = None
    message_id: str | None = None
    note: str | None = None  # why this delivery reached no message (shown in /jobs)
    legacy: bool = False  # recorded before job tokens: its buttons name the job by row id
    posted_at: datetime | None = None

    @property
    def settled(self) -> bool:
        return self.message_id is not None or self.note is not None


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    daily: int
    concurrent: int


@dataclass(frozen=True, slots=True)
class QuotaUsage:
    subject: Subject
    limits: QuotaLimits
    used_today: int
    in_flight: int
    resets_at: datetime

    @property
    def remaining_today(self) -> int:
        return max(0, self.limits.daily - self.used_today)


@dataclass(frozen=True, slots=True)
class Delivery:
    job_id: int
    target: str  # "discord" or "cli"
    attempts: int
    next_attempt_at: datetime
    last_error: str | None = None


# --- money: amounts are integer micro-dollars, see bot.money.prices ------------------------------------

@dataclass(frozen=True, slots=True)
class SpendReservation:
    """What a new job may cost at worst, reserved against the spend caps in the transaction that records it."""

    worst_micro: int
    install_daily_micro: int | None = None  # SPEND_DAILY_USD; None: no install-wide cap


@dataclass(frozen=True, slots=True)
class JobSpend:
    job_id: int
    scope: str
    user_id: str
    operation: str
    provider: str
    created_at: datetime
    images: int
    reserved_micro: int  # counted against the install's and the guild's caps
    member_micro: int  # counted against the member's daily cap
    settled_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SpendRow:
    """One line of a usage report: a UTC day, guild, member, operation and provider."""

    date: str  # YYYY-MM-DD, UTC
    guild_id: str  # "" for command-line jobs
    user_id: str
    operation: str
    provider: str
    jobs: int
    images: int
    micro: int


@dataclass(frozen=True, slots=True)
class PhotoRef:
    """An image kept by its content (bot.blobs), as a request references its inputs."""

    sha256: str
    mime: str
    width: int
    height: int
    filename: str = "photo"


@dataclass(frozen=True, slots=True)
class MemberPrefs:
    """What a member's commands use when they say nothing else; one per Discord user, in every server."""

    user_id: str
    size: str | None = None  # a size preset; None: the provider's default
    count: int | None = None  # None: one image
    private_delivery: bool = False  # results by direct message instead of in the channel
    photo: PhotoRef | None = None  # "my photo", the person in a try-on when none is attached


@dataclass(frozen=True, slots=True)
class Forgotten:
    """What forgetting a member did: `blobs` are the images their rows referenced that no other row references any
    more (the caller deletes them from the blob store)."""

    jobs: int
    posts: int
    prefs: bool
    blobs: tuple[str, ...]


FORGOTTEN_USER = "forgotten"  # the user id of a forgotten member's jobs and spend: counted, identifying nobody

