"""The fake Discord's forms are as strict as Discord's: what Discord refuses (400 50035), the fake refuses, and a
member's submission has the shape Discord sends."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes.discord.modals import submission, validate_form
from tests.fakes.discord.rest import ApiError


def text(custom_id: str, **more: Any) -> dict[str, Any]:
    return {"type": 18, "label": custom_id.title(), "component": {"type": 4, "custom_id": custom_id, "style": 1,
                                                                   "label": None, **more}}


def form(*components: dict[str, Any], title: str = "Remix job #1") -> dict[str, Any]:
    return {"custom_id": "f", "title": title, "components": list(components)}


@pytest.mark.parametrize("bad", [
    form(*[text(f"t{i}") for i in range(6)]),  # more than five components
    form(),  # none
    form(text("a"), title="x" * 46),  # title over 45 characters
    form(text("a"), text("a")),  # the same custom_id twice
    form({"type": 1, "components": [{"type": 2, "custom_id": "b", "style": 1, "label": "B"}]}),  # a button
    form(text("a", value="x" * 11, max_length=10)),  # a default longer than its own limit
    form({"type": 18, "label": "Mask", "component": {"type": 3, "custom_id": "m", "options": []}}),  # empty select
])
def test_what_discord_refuses_the_fake_refuses(bad: dict[str, Any]) -> None:
    with pytest.raises(ApiError) as refused:
        validate_form(bad)
    assert (refused.value.status, refused.value.code) == (400, 50035)


def test_a_submission_carries_each_control_in_its_label_with_what_the_member_typed() -> None:
    shown = form(text("prompt", value="a fox", max_length=100), text("seed", required=False),
                 {"type": 18, "label": "Mask", "component": {"type": 3, "custom_id": "mask", "options": [
                     {"label": "Upper", "value": "upper"}, {"label": "Lower", "value": "lower", "default": True}]}})
    data = submission(shown, {"seed": "7"})
    assert data == {"custom_id": "f", "components": [
        {"type": 18, "component": {"type": 4, "custom_id": "prompt", "value": "a fox"}},
        {"type": 18, "component": {"type": 4, "custom_id": "seed", "value": "7"}},
        {"type": 18, "component": {"type": 3, "custom_id": "mask", "values": ["lower"]}}]}
    with pytest.raises(ValueError):
        submission(shown, {"prompt": ""})  # a required field cannot be sent empty
    with pytest.raises(LookupError):
        submission(shown, {"colour": "red"})
