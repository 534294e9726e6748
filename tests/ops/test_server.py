"""The operator's port over real HTTP: /healthz answers while the process lives, /readyz says which check is not
ready (a store that fails or hangs, a drain), /metrics is Prometheus text whose labels stay bounded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.errors import ConfigError
from bot.ops import health, metrics
from bot.ops.health import Health
from bot.ops.server import OpsServer


@pytest.fixture
async def served() -> AsyncIterator[tuple[Health, str]]:
    checks = Health()
    server = OpsServer(checks)
    port = await server.start("127.0.0.1", 0)
    yield checks, f"http://127.0.0.1:{port}"
    await server.stop()


async def fetch(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def test_ready_only_when_every_check_is(served: tuple[Health, str], monkeypatch: pytest.MonkeyPatch) -> None:
    checks, base = served
    monkeypatch.setattr(health, "CHECK_TIMEOUT_S", 0.2)
    state = {"draining": False}

    async def store_ok() -> str | None:
        return None

    async def draining() -> str | None:
        return "draining after SIGTERM" if state["draining"] else None

    checks.add_check("store", store_ok)
    checks.add_check("draining", draining)
    status, _, body = await fetch(f"{base}/readyz")
    assert status == 200 and '"ready"' in body

    state["draining"] = True
    status, _, body = await fetch(f"{base}/readyz")
    assert status == 503 and "draining after SIGTERM" in body

    async def store_down() -> str | None:
        raise OSError("could not connect to postgresql://atelier:hunter2@db/atelier")

    async def store_hangs() -> str | None:
        await asyncio.sleep(30)
        return None

    state["draining"] = False
    checks.add_check("store", store_down)
    status, _, body = await fetch(f"{base}/readyz")
    assert status == 503 and "failed (OSError)" in body and "hunter2" not in body
    checks.add_check("store", store_hangs)
    status, _, body = await fetch(f"{base}/readyz")
    assert status == 503 and "no answer within" in body

    status, _, body = await fetch(f"{base}/healthz")  # alive all along
    assert status == 200 and "alive" in body


async def test_metrics_are_prometheus_text_with_bounded_labels(served: tuple[Health, str]) -> None:
    _, base = served
    metrics.observe_provider_request("fal", "post", "2xx", 0.1)
    metrics.observe_provider_request("some-new-vendor", "BREW", "5xx", 0.2)  # unknown names: "other"
    status, content_type, text = await fetch(f"{base}/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    errors = {tuple(sorted(s.labels.items())) for s in families["atelier_provider_errors"].samples
              if s.name == "atelier_provider_errors_total"}
    assert (("method", "other"), ("outcome", "5xx"), ("provider", "other")) in errors
    assert not any("some-new-vendor" in str(s.labels) for f in families.values() for s in f.samples)
    assert "atelier_jobs_in_flight" in families and "process_resident_memory_bytes" in families


async def test_a_taken_port_is_a_clear_configuration_error(served: tuple[Health, str]) -> None:
    _, base = served
    port = int(base.rsplit(":", 1)[1])
    with pytest.raises(ConfigError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
        await OpsServer(Health()).start("127.0.0.1", port)
