"""The Prometheus metrics every process exports, on a registry of its own (bot.ops.server serves it).

Label values are bounded by construction: provider names, operations, states, HTTP methods, outcome classes and
route templates. Never an id, a prompt or a user.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:  # bot.jobs imports the providers, whose HTTP path imports this module
    from bot.jobs.events import JobEvent

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # process_resident_memory_bytes, process_cpu_seconds_total, ...

JOBS_STARTED = Counter("atelier_jobs_started_total", "Jobs recorded and charged by this process.",
                       ["operation", "provider"], registry=REGISTRY)
JOBS_FINISHED = Counter("atelier_jobs_finished_total", "Jobs that reached their end in this process, by end state.",
                        ["state", "operation", "provider"], registry=REGISTRY)
REFUSALS = Counter("atelier_refusals_total", "Jobs refused before anything was recorded: a quota, a spend cap, or "
                   "the process draining.", ["reason"], registry=REGISTRY)
PROVIDER_SECONDS = Histogram("atelier_provider_request_seconds", "Provider HTTP requests (one attempt each) and how "
                             "long each took.", ["provider", "method", "outcome"], registry=REGISTRY,
                             buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
PROVIDER_ERRORS = Counter("atelier_provider_errors_total", "Provider HTTP requests that failed: an error status, a "
                          "timeout or a broken connection.", ["provider", "method", "outcome"], registry=REGISTRY)
DELIVERIES = Counter("atelier_deliveries_total", "Attempts to hand a finished job to its receiver.",
                     ["target", "outcome"], registry=REGISTRY)
DELIVERY_RETRIES = Counter("atelier_delivery_retries_total", "Deliveries that failed and were scheduled again.",
                           ["target"], registry=REGISTRY)
DISCORD_REQUESTS = Counter("atelier_discord_requests_total", "HTTP requests to Discord's REST API, by route template.",
                           ["method", "route", "status"], registry=REGISTRY)
DISCORD_RATE_LIMITED = Counter("atelier_discord_rate_limited_total", "Discord REST answers 429 (rate limited), by "
                               "route template.", ["method", "route"], registry=REGISTRY)
LOOP_LAG = Histogram("atelier_event_loop_lag_seconds", "How late the event loop woke a periodic timer.",
                     registry=REGISTRY, buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
DRAINING = Gauge("atelier_draining", "1 while the process drains after SIGTERM.", registry=REGISTRY)

# The closed sets some labels come from: anything else is counted as "other", so a label can never carry free text.
OPERATIONS = frozenset({"tryon", "filter", "edit", "imagine"})
PROVIDERS = frozenset({"glam", "fal", "pixazo", "novita", "local"})
REFUSAL_REASONS = frozenset({"daily", "concurrent", "member_daily", "guild_daily", "guild_monthly", "install_daily",
                             "draining"})
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"})


def bounded(value: str | None, allowed: frozenset[str]) -> str:
    return value if value in allowed else "other"


def status_class(status: int) -> str:
    """An HTTP status as a label: 429 on its own (it means something else than other 4xx), else its class."""
    return "429" if status == 429 else f"{status // 100}xx"


def observe_provider_request(provider: str, method: str, outcome: str, seconds: float) -> None:
    """One attempt of one provider request. `outcome`: a status class, "timeout" or "connection"."""
    labels = (bounded(provider, PROVIDERS), bounded(method.upper(), HTTP_METHODS), outcome)
    PROVIDER_SECONDS.labels(*labels).observe(seconds)
    if outcome not in ("2xx", "3xx"):
        PROVIDER_ERRORS.labels(*labels).inc()


async def count_job_event(event: JobEvent) -> None:
    """A runner listener (Runner.add_listener): counts each job's end."""
    if event.kind == "finished":
        job = event.job
        JOBS_FINISHED.labels(job.state.value, bounded(job.operation, OPERATIONS),
                             bounded(job.provider, PROVIDERS)).inc()


# --- gauges read when scraped ---------------------------------------------------------------------------------

InFlight = Callable[[], Iterable[tuple[str, str, str]]]  # (state, operation, provider) of each job worked here
Shards = Callable[[], Iterable[tuple[int, bool, float | None]]]  # (shard id, connected, latency s) of each shard


@dataclass
class LiveViews:
    """What is true right now, asked of the process when Prometheus scrapes: the jobs it works, its shards.
    Each process kind sets what it has (the gateway only exists in a bot process)."""

    in_flight: InFlight | None = None
    shards: Shards | None = None


class LiveCollector(Collector):
    def __init__(self, views: LiveViews) -> None:
        self.views = views

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []  # collected fresh each scrape

    def collect(self) -> Iterable[GaugeMetricFamily]:
        jobs = GaugeMetricFamily("atelier_jobs_in_flight", "Jobs this process works now, by state.",
                                 labels=["state", "operation", "provider"])
        counts: dict[tuple[str, str, str], int] = {}
        for state, operation, provider in (self.views.in_flight() if self.views.in_flight else ()):
            key = (state, bounded(operation, OPERATIONS), bounded(provider, PROVIDERS))
            counts[key] = counts.get(key, 0) + 1
        for key, count in sorted(counts.items()):
            jobs.add_metric(list(key), count)
        yield jobs
        connected = GaugeMetricFamily("atelier_discord_shard_connected", "1 for each gateway shard this process "
                                      "owns that is connected, 0 for one that is not.", labels=["shard"])
        latency = GaugeMetricFamily("atelier_discord_gateway_latency_seconds", "Gateway heartbeat latency of each "
                                    "shard this process owns.", labels=["shard"])
        for shard, up, seconds in (self.views.shards() if self.views.shards else ()):
            connected.add_metric([str(shard)], 1.0 if up else 0.0)
            if seconds is not None:
                latency.add_metric([str(shard)], seconds)
        yield connected
        yield latency


VIEWS = LiveViews()
REGISTRY.register(LiveCollector(VIEWS))


def exported_names() -> set[str]:
    """Every series name this process can export (histograms and counters with their suffixes), for checking that
    a dashboard queries only what exists."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        if family.type == "counter":
            names.update({f"{family.name}_total", f"{family.name}_created"})
        if family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count", "_created"))
    return names
