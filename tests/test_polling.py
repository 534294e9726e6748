"""The poll schedule uses the provider's hints and spreads polls; the registry picks providers in order."""

from __future__ import annotations

import aiohttp
import pytest

from bot.errors import ConfigError
from bot.operations import Operation
from bot.providers.polling import PollSchedule
from bot.providers.registry import build_providers
from bot.providers.status import Queued, Running
from bot.settings import Settings


def test_schedule_uses_eta_progress_and_queue_position() -> None:
    s = PollSchedule(initial_s=1.0, max_s=10.0, jitter=0.0)
    assert s.delay(Running(eta_s=4.0), polls=3, elapsed_s=5, typical_s=10) == pytest.approx(3.6)
    # Half done after 6 s: about 6 s left; look a little before.
    assert s.delay(Running(progress=50), polls=3, elapsed_s=6, typical_s=10) == pytest.approx(4.8)
    assert s.delay(Queued(position=4), polls=1, elapsed_s=1, typical_s=10) == pytest.approx(10.0)
    assert s.delay(None, polls=0, elapsed_s=0, typical_s=10) == pytest.approx(2.5)
    assert s.delay(None, polls=0, elapsed_s=0, typical_s=2) == pytest.approx(0.5)
    # Nothing known: back off geometrically up to the cap.
    assert [s.delay(Running(), polls=n, elapsed_s=0, typical_s=10) for n in (1, 2, 3, 9)] == \
        pytest.approx([1.0, 1.5, 2.25, 10.0])


def test_jitter_spreads_polls() -> None:
    s = PollSchedule(initial_s=1.0, jitter=0.1)
    delays = {round(s.delay(Running(), polls=1, elapsed_s=0, typical_s=10), 6) for _ in range(50)}
    assert len(delays) > 10 and all(0.9 <= d <= 1.1 for d in delays)


async def test_registry_order_and_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("GLAM_API_KEY", "FAL_KEY", "PIXAZO_API_KEY", "NOVITA_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    async with aiohttp.ClientSession() as session:
        none = build_providers(Settings(_env_file=None), session)  # type: ignore[call-arg]
        assert none.choose(Operation.FILTER).name == "local"
        with pytest.raises(ConfigError, match="No provider is configured for imagine"):
            none.choose(Operation.IMAGINE)
        with pytest.raises(ConfigError, match="not configured"):
            none.choose(Operation.IMAGINE, "fal")
        with pytest.raises(ConfigError, match="Unknown provider"):
            none.choose(Operation.IMAGINE, "dalle")
        some = build_providers(Settings(_env_file=None, pixazo_api_key="k", fal_key="k", glam_api_key="k"),  # type: ignore[call-arg]
                               session)
        assert some.choose(Operation.IMAGINE).name == "pixazo"
        assert some.choose(Operation.EDIT).name == "fal"
        assert some.choose(Operation.FILTER).name == "glam"
        with pytest.raises(ConfigError, match="does not offer tryon"):
            some.choose(Operation.TRYON, "fal")


def test_settings_keep_keys_secret() -> None:
    settings = Settings(_env_file=None, fal_key="fal-very-secret")  # type: ignore[call-arg]
    assert "fal-very-secret" not in repr(settings) and "fal-very-secret" not in str(settings)
    assert Settings(_env_file=None, fal_key="  ").fal_key is None  # type: ignore[call-arg]
