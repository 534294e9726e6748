"""The one state machine every provider's statuses map onto, and the handle that lets polling resume.

queued(position) -> running(progress) -> succeeded(outputs) | failed(reason, retryable, charged) | cancelled
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from bot.redaction import redact


@dataclass(frozen=True, slots=True)
class Queued:
    position: int | None = None
    eta_s: float | None = None


@dataclass(frozen=True, slots=True)
class Running:
    progress: float | None = None  # 0..100 where the provider says
    eta_s: float | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        if self.message:  # a provider's log line: shown as progress, so never with a key in it
            object.__setattr__(self, "message", redact(self.message))


@dataclass(frozen=True, slots=True)
class OutputImage:
    """Where a finished image is: a provider URL, or the bytes themselves (local provider)."""

    url: str | None = None
    data: bytes | None = field(default=None, repr=False)
    nsfw: bool = False
    mime: str | None = None


@dataclass(frozen=True, slots=True)
class Succeeded:
    outputs: tuple[OutputImage, ...]
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    reason: str
    retryable: bool = False
    # None means "unknown": the provider may have charged. Refund decisions treat None as "may have".
    charged: bool | None = None
    code: str | None = None

    def __post_init__(self) -> None:
        # Every provider's failure text passes here on its way to the store and the member.
        object.__setattr__(self, "reason", redact(self.reason))


@dataclass(frozen=True, slots=True)
class Cancelled:
    reason: str = "cancelled"

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", redact(self.reason))


Pending = Queued | Running
Terminal = Succeeded | Failed | Cancelled
JobStatus = Pending | Terminal


def is_terminal(status: JobStatus) -> bool:
    return isinstance(status, Succeeded | Failed | Cancelled)


class RemoteHandle(BaseModel):
    """A small serialisable value naming a job at a provider, enough to poll, fetch and cancel it later."""

    model_config = ConfigDict(frozen=True)

    provider: str
    remote_id: str
    operation: str
    status_url: str | None = None
    result_url: str | None = None
    cancel_url: str | None = None
    extra: dict[str, Any] = {}

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> RemoteHandle:
        return cls.model_validate(json.loads(text))
