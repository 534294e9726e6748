"""The hub between webhook calls and waiting jobs: early calls, trust, and bounded memory."""

from __future__ import annotations

from bot.providers.status import Failed
from bot.webhooks import hub as hub_module
from bot.webhooks.hub import WebhookHub


async def test_a_call_that_comes_before_the_job_is_followed_is_handed_over() -> None:
    hub = WebhookHub()
    outcome = Failed(reason="x", code="webhook_error")
    assert hub.notify("fal", "r1", outcome) is False
    hint = hub.expect("fal", "r1")
    assert await hint.wait(0) is True and hint.status == outcome
    assert await hub.expect("fal", "r2").wait(0) is False


async def test_jobs_ending_without_their_call_end_the_trust_and_a_real_call_restores_it() -> None:
    hub = WebhookHub()
    for n in range(3):
        hint = hub.expect("novita", f"t{n}")
        hub.forget("novita", f"t{n}", ended_by_webhook=hint.fired)
    assert not hub.arriving("novita") and hub.arriving("fal")
    # A call about a job nobody follows proves nothing, signed or not (a late retry, another account's job)...
    hub.notify("novita", "made-up")
    hub.notify("novita", "made-up-2", Failed(reason="x"))
    assert not hub.arriving("novita")
    # ...a call for a job being followed does.
    hub.expect("novita", "t9")
    assert hub.notify("novita", "t9") is True
    assert hub.arriving("novita")


def test_early_calls_are_bounded() -> None:
    hub = WebhookHub()
    hub_module.EARLY_LIMIT, old = 100, hub_module.EARLY_LIMIT
    try:
        for n in range(1000):
            hub.notify("novita", f"flood-{n}")
        assert len(hub._early["novita"]) == 100
    finally:
        hub_module.EARLY_LIMIT = old
