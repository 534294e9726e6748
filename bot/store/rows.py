"""Job rows as stored and as callers see them: the one encoding of every value a store writes (timestamps as
fixed-width ISO-8601 UTC text, lists and dicts as JSON), shared by every store so that all of them read and write
the same shapes. No SQL here.

Timestamps: one fixed width ("2025-01-31T09:15:00.000000+00:00"), so text comparison is time comparison. Every
datetime read back is timezone-aware UTC; a naive datetime passed in is refused rather than guessed at.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

from bot.operations import Operation
from bot.providers.status import RemoteHandle
from bot.store.models import Delivery, DiscordPost, Job, JobState, Origin, PostKind, StoredOutput, Subject


class Row(Protocol):
    """A result row read by column name (sqlite3.Row; a PostgreSQL driver's record)."""

    def __getitem__(self, key: str, /) -> Any: ...

    def keys(self) -> Iterable[str]: ...


# Every job read carries whether its delivery was given up (from the outbox).
JOB_SELECT = ("SELECT jobs.*, EXISTS (SELECT 1 FROM deliveries d WHERE d.job_id = jobs.id"
              " AND d.state = 'undeliverable') AS undeliverable FROM jobs")


def ts(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: pass a timezone-aware (UTC) datetime")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def ts_or_none(value: datetime | None) -> str | None:
    return None if value is None else ts(value)


def dt(text: str | datetime) -> datetime:
    # A server store's driver reads timestamptz columns as datetimes already.
    parsed = text if isinstance(text, datetime) else datetime.fromisoformat(text)
    # Rows written by this module always carry +00:00; a hand-edited row without an offset is read as UTC.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def dt_or_none(text: str | datetime | None) -> datetime | None:
    return None if text is None else dt(text)


def to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _enc_json_or_none(value: Any) -> str | None:
    return None if value is None else to_json(value)


def encode_handle(value: Any) -> str | None:
    # A dict is checked as a handle first: what is stored must read back as one.
    if value is None:
        return None
    handle = value if isinstance(value, RemoteHandle) else RemoteHandle.model_validate(value)
    return to_json(handle.model_dump(mode="json"))


def encode_extra(value: Any) -> str:
    if not isinstance(value, dict):
        raise TypeError(f"extra must be a dict, not {type(value).__name__}")
    return to_json(value)


def _enc_state(value: Any) -> str:
    return JobState(value).value


def _enc_int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _enc_int(value: Any) -> int:
    return int(value)


def _enc_float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def text_or_none(value: Any) -> str | None:
    # Discord ids arrive as ints from discord.py and as strings elsewhere; they are stored as text.
    return None if value is None else str(value)


def _enc_bool_or_none(value: Any) -> int | None:
    return None if value is None else int(bool(value))


def _enc_ts_or_none(value: Any) -> str | None:
    return ts_or_none(value)


_OUTPUT_FIELDS = frozenset(f.name for f in dataclasses.fields(StoredOutput))


def encode_outputs(value: Any) -> str:
    outputs = list(value)
    for output in outputs:
        if not isinstance(output, StoredOutput):
            raise TypeError(f"outputs must be StoredOutput values, not {type(output).__name__}")
    return to_json([dataclasses.asdict(o) for o in outputs])


def from_json(value: Any) -> Any:
    """A JSON column as read: text from SQLite, already decoded from a server store's jsonb."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def decode_outputs(text: Any) -> tuple[StoredOutput, ...]:
    # Keys this version does not know (written by a newer Atelier) are ignored rather than fatal.
    return tuple(StoredOutput(**{k: v for k, v in item.items() if k in _OUTPUT_FIELDS})
                 for item in from_json(text))


# The columns update_job and transition may write, each with its encoder. Column names in SQL text come from
# these keys only; everything else is a bound parameter.
UPDATABLE: dict[str, Callable[[Any], Any]] = {
    "state": _enc_state,
    "provider": text_or_none,  # changes when a job falls back to the next provider in the order
    "handle": encode_handle,
    "queue_position": _enc_int_or_none,
    "progress": _enc_float_or_none,
    "attempts": _enc_int,
    "outputs": encode_outputs,
    "seed": text_or_none,  # text: some providers use unsigned 64-bit seeds, beyond SQLite's INTEGER
    "error_code": text_or_none,
    "error_message": text_or_none,
    "charged": _enc_bool_or_none,
    "message_id": text_or_none,
    "submitted_at": _enc_ts_or_none,
    "finished_at": _enc_ts_or_none,
    "channel_id": text_or_none,
    "extra": encode_extra,
}


def set_clause(fields: dict[str, Any], now: datetime, *, placeholder: str,
               now_value: Any, cast: Callable[[str], str] = lambda _: "") -> tuple[str, list[Any]]:
    """The SET list of update_job and transition, in a store's placeholder style: every named column (checked
    against UPDATABLE, the only names that reach SQL text) and updated_at; a first terminal state also sets
    finished_at. `now_value` is `now` as the store binds times; `cast(name)` what follows a column's placeholder."""
    unknown = sorted(set(fields) - UPDATABLE.keys())
    if unknown:
        raise ValueError(f"unknown job field(s) {unknown}; updatable: {sorted(UPDATABLE)}")
    assignments = [f"updated_at = {placeholder}"]
    params: list[Any] = [now_value]
    for name, value in fields.items():
        assignments.append(f"{name} = {placeholder}{cast(name)}")  # name is a key of UPDATABLE, checked above
        params.append(UPDATABLE[name](value))
    if "state" in fields and JobState(fields["state"]).terminal and "finished_at" not in fields:
        # Pruning and history rely on finished_at; a caller that forgets it gets the first terminal time.
        assignments.append(f"finished_at = COALESCE(finished_at, {placeholder})")
        params.append(now_value)
    return ", ".join(assignments), params


def job_from_row(row: Row) -> Job:
    seed = row["seed"]
    charged = row["charged"]
    return Job(
        id=row["id"],
        # role_ids are not stored: roles change, and a stale snapshot must not pass for the member's roles.
        subject=Subject(scope=row["scope"], user_id=row["user_id"]),
        origin=Origin(row["origin"]),
        operation=Operation(row["operation"]),
        request=from_json(row["request"]),
        provider=row["provider"],
        state=JobState(row["state"]),
        cost=row["cost"],
        created_at=dt(row["created_at"]),
        updated_at=dt(row["updated_at"]),
        deadline_at=dt(row["deadline_at"]),
        handle=None if row["handle"] is None else RemoteHandle.model_validate(from_json(row["handle"])),
        queue_position=row["queue_position"],
        progress=row["progress"],
        attempts=row["attempts"],
        outputs=decode_outputs(row["outputs"]),
        seed=None if seed is None else int(seed),
        error_code=row["error_code"],
        error_message=row["error_message"],
        charged=None if charged is None else bool(charged),
        refunded=bool(row["refunded"]),
        parent_job_id=row["parent_job_id"],
        channel_id=row["channel_id"],
        message_id=row["message_id"],
        submitted_at=dt_or_none(row["submitted_at"]),
        finished_at=dt_or_none(row["finished_at"]),
        lease_owner=row["lease_owner"],
        lease_expires_at=dt_or_none(row["lease_expires_at"]),
        extra=from_json(row["extra"]),
        token=row["token"] or "",
        undeliverable=bool(row["undeliverable"]) if "undeliverable" in row.keys() else False,  # noqa: SIM118
    )


def new_token() -> str:
    """A job's public identity: 80 random bits, as 20 hex digits (the same shape migration 0004 gives old rows)."""
    return secrets.token_hex(10)


def new_nonce(kind: PostKind, token: str) -> str:
    # Discord allows 25 characters. The job's token makes it unique across installations; the random tail makes
    # each post of one job (status, result, re-posts) its own.
    return f"{kind.value[0]}{token[:16]}{secrets.token_hex(4)}"


def post_from_row(row: Row) -> DiscordPost:
    return DiscordPost(id=row["id"], job_id=row["job_id"], kind=PostKind(row["kind"]), nonce=row["nonce"],
                       created_at=dt(row["created_at"]), channel_id=row["channel_id"],
                       message_id=row["message_id"], note=row["note"], legacy=bool(row["legacy"]),
                       posted_at=dt_or_none(row["posted_at"]))


def utcnow() -> datetime:
    return datetime.now(UTC)


def delivery_from_row(row: Row) -> Delivery:
    return Delivery(job_id=row["job_id"], target=row["target"], attempts=row["attempts"],
                    next_attempt_at=dt(row["next_attempt_at"]), last_error=row["last_error"])


