"""The poll schedule uses the provider's hints and spreads polls; the registry picks providers in order."""

from __future__ import annotations

import aiohttp
import pytest

from bot.errors import ConfigError
from bot.operations import Operation
from bot.providers.durations import DurationBook, DurationEstimate
from bot.providers.polling import PollSchedule
from bot.providers.registry import build_providers
from bot.providers.status import Queued, Running
from bot.settings import Settings


def test_schedule_uses_eta_progress_and_queue_position() -> None:
    s = PollSchedule(min_s=0.2, max_s=10.0, jitter=0.0)
    assert s.delay(Running(eta_s=4.0), polls=3, elapsed_s=5, typical_s=10) == pytest.approx(4.0)
    # Half done after 6 s: about 6 s left; look a little before.
    assert s.delay(Running(progress=50), polls=3, elapsed_s=6, typical_s=10) == pytest.approx(4.8)
    # Not started yet: twice the usual gap (2% of the typical 10 s), and once more for each job ahead.
    assert s.delay(Queued(), polls=1, elapsed_s=3, typical_s=10) == pytest.approx(0.4)
    assert s.delay(Queued(position=4), polls=1, elapsed_s=3, typical_s=10) == pytest.approx(1.2)


def test_nothing_known_first_look_at_a_quarter_of_typical_then_a_share_of_the_age() -> None:
    s = PollSchedule(min_s=0.2, max_s=10.0, age_fraction=0.03, jitter=0.0)
    assert s.delay(None, polls=0, elapsed_s=0, typical_s=10) == pytest.approx(2.25)
    assert s.delay(None, polls=0, elapsed_s=0, typical_s=0.05) == pytest.approx(0.01125)  # local filters
    # Past the first likely moment: 3% of the expected duration, or of the age once past it; never under the
    # gap floor nor over the cap.
    assert s.delay(Running(), polls=1, elapsed_s=2.5, typical_s=10) == pytest.approx(0.3)
    assert s.delay(Running(), polls=1, elapsed_s=2.5, typical_s=4) == pytest.approx(0.2)
    assert s.delay(Running(), polls=5, elapsed_s=20, typical_s=10) == pytest.approx(0.6)
    assert s.delay(Running(), polls=50, elapsed_s=1000, typical_s=10) == pytest.approx(10.0)


def test_learned_durations_move_the_first_look_and_back_off_past_the_slow_ones() -> None:
    s = PollSchedule(min_s=0.2, max_s=10.0, age_fraction=0.03, jitter=0.0)
    learned = DurationEstimate(low=4.0, typical=11.0, high=18.0)
    assert s.delay(None, polls=0, elapsed_s=0, typical_s=15, learned=learned) == pytest.approx(3.6)
    assert s.delay(Running(), polls=2, elapsed_s=5, typical_s=15, learned=learned) == pytest.approx(0.33)
    # Far beyond what recent jobs took: probably queued or stuck, so look three times less often.
    assert s.delay(Running(), polls=9, elapsed_s=30, typical_s=15, learned=learned) == pytest.approx(2.7)


def test_polls_per_job_stay_few_and_results_are_noticed_within_a_small_share_of_the_duration() -> None:
    """Walk the schedule over jobs of 2-20 s: the wait after the job ends and the number of looks."""
    s = PollSchedule(min_s=0.2, max_s=10.0, age_fraction=0.03, jitter=0.0)
    learned = DurationEstimate(low=2.1, typical=11.0, high=18.2)
    looks: list[int] = []
    for duration in (2.0, 5.0, 11.0, 20.0):
        t, polls = 0.0, 0
        while True:
            t += s.delay(Running() if polls else None, polls, t, 15.0, learned)
            polls += 1
            if t >= duration:
                break
        assert t - duration <= 0.4 and (t - duration) / duration <= 0.2
        assert polls <= 50
        looks.append(polls)
    # An average (11 s) job takes about 30 looks; fal-client's 0.1 s poll takes about 110.
    assert looks[2] <= 32


def test_jitter_spreads_polls() -> None:
    s = PollSchedule(min_s=0.2, jitter=0.1)
    delays = {round(s.delay(Running(), polls=1, elapsed_s=100, typical_s=10), 6) for _ in range(50)}
    assert len(delays) > 10 and all(1.8 <= d <= 2.2 for d in delays)
    safety = {round(PollSchedule(safety_s=30).safety_delay(), 6) for _ in range(50)}
    assert len(safety) > 10 and all(27 <= d <= 33 for d in safety)


def test_duration_book_needs_a_few_samples_and_gives_quantiles() -> None:
    book = DurationBook()
    for seconds in (5.0, 6.0, 7.0, 8.0):
        book.record("fal", "imagine", seconds)
    assert book.estimate("fal", "imagine") is None
    for seconds in range(1, 101):
        book.record("fal", "edit", float(seconds))
    estimate = book.estimate("fal", "edit")
    assert estimate is not None
    # Only the last 64 count: 37..100.
    assert (estimate.low, estimate.typical, estimate.high) == (37.0, 69.0, 94.0)
    assert book.estimate("novita", "edit") is None


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
