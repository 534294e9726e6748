"""Calls and polling: HTTP behaviour shared by every adapter, job deadlines, the poll schedule, retired models."""

from __future__ import annotations

from pydantic import Field, field_validator

from bot.config.area import Area


class CallSettings(Area):
    http_timeout_s: float = Field(default=30.0, gt=0)
    http_max_attempts: int = Field(default=5, ge=1, le=20)
    http_backoff_base_s: float = Field(default=0.5, ge=0)
    # A model found retired at a provider is skipped by every process for this long before it is tried again.
    retired_model_mark_s: float = Field(default=3600.0, gt=0)
    job_deadline_s: float = Field(default=600.0, gt=0)
    # Per-operation deadlines overriding JOB_DEADLINE_S, as JSON: {"filter": 120, "tryon": 300}.
    job_deadlines: dict[str, float] = Field(default_factory=dict)
    # Poll schedule: shortest and longest gap between two polls of one job, and with no better hint, the share
    # of a job's age to wait before looking again (0.02: a result waits about 1% of the job's duration).
    poll_min_s: float = Field(default=0.2, gt=0)
    poll_max_s: float = Field(default=10.0, gt=0)
    poll_age_fraction: float = Field(default=0.02, gt=0, le=1)

    @field_validator("job_deadlines")
    @classmethod
    def _known_operations(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = set(value) - {"tryon", "filter", "edit", "imagine"}
        if unknown:
            raise ValueError(f"unknown operation(s) {sorted(unknown)}: use tryon, filter, edit, imagine")
        if any(v <= 0 for v in value.values()):
            raise ValueError("deadlines must be positive numbers of seconds")
        return value
