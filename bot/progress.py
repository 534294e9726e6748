"""Live progress on a terminal: one line, rewritten in place. Silent when stderr is not a terminal."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, TextIO

from bot.providers.status import Cancelled, Failed, JobStatus, Queued, Running, Succeeded

if TYPE_CHECKING:
    from bot.jobs import JobEvent


def describe(status: JobStatus) -> str:
    if isinstance(status, Queued):
        return "queued" + (f", position {status.position}" if status.position is not None else "")
    if isinstance(status, Running):
        text = "running"
        if status.progress is not None:
            text += f" {status.progress:.0f}%"
        if status.eta_s:
            text += f", about {status.eta_s:.0f} s left"
        return text
    if isinstance(status, Succeeded):
        return f"done, {len(status.outputs)} image(s)"
    if isinstance(status, Failed):
        return f"failed: {status.reason}"
    assert isinstance(status, Cancelled)
    return "cancelled"


class ProgressLine:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self.started = time.monotonic()
        self._width = 0

    async def update(self, status: JobStatus) -> None:
        if not self.enabled:
            return
        self._write(describe(status))

    async def update_event(self, event: JobEvent) -> None:
        if event.kind == "waiting":
            if self.enabled:
                place = f", place {event.place_in_line} in line" if event.place_in_line else ""
                self._write(f"waiting for a slot at {event.job.provider}{place}")
        elif event.status is not None:
            await self.update(event.status)

    def _write(self, text: str) -> None:
        text = f"{text} [{time.monotonic() - self.started:.1f} s]"
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)

    def close(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\n")
            self.stream.flush()
