"""How long jobs have recently taken, per provider and operation: the poll schedule's best guess of when a
job will be done, learned from the last jobs rather than fixed in code."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

# Enough recent jobs to see the spread, few enough to follow a provider that got slower today.
WINDOW = 64
# Fewer samples than this say too little: the provider's documented typical duration is used instead.
MIN_SAMPLES = 5


@dataclass(frozen=True, slots=True)
class DurationEstimate:
    """Quantiles of recent durations, in seconds."""

    low: float  # the fastest recent job: before this, a job is hardly ever done
    typical: float  # median
    high: float  # 90th percentile: well past this, a job is probably stuck or queued


class DurationBook:
    def __init__(self, window: int = WINDOW) -> None:
        self._window = window
        self._samples: dict[tuple[str, str], deque[float]] = {}

    def record(self, provider: str, operation: str, seconds: float) -> None:
        if seconds <= 0:
            return
        key = (provider, operation)
        samples = self._samples.get(key)
        if samples is None:
            samples = self._samples[key] = deque(maxlen=self._window)
        samples.append(seconds)

    def estimate(self, provider: str, operation: str) -> DurationEstimate | None:
        samples = self._samples.get((provider, operation))
        if samples is None or len(samples) < MIN_SAMPLES:
            return None
        ordered = sorted(samples)

        def quantile(q: float) -> float:
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

        return DurationEstimate(low=ordered[0], typical=quantile(0.5), high=quantile(0.9))
