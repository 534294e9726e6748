"""Discord request metrics are labelled by route template: ids, interaction tokens and emoji never become labels."""

from __future__ import annotations

import pytest
import yarl

from bot.discord_metrics import route_template

BASE = "https://discord.com/api/v10"


@pytest.mark.parametrize(("url", "route"), [
    ("/channels/123456789012345678/messages?limit=50", "/channels/{id}/messages"),
    ("/channels/1/messages/2/reactions/%F0%9F%94%84/@me", "/channels/{id}/messages/{id}/reactions/{emoji}/@me"),
    ("/interactions/1577283786159292417/aW50ZXJhY3Rpb246MTIzOlh5ei1hYmM/callback",
     "/interactions/{id}/{token}/callback"),
    ("/webhooks/42/aW50ZXJhY3Rpb24tdG9rZW4/messages/@original", "/webhooks/{id}/{token}/messages/@original"),
    ("/applications/42/guilds/7/commands", "/applications/{id}/guilds/{id}/commands"),
    ("/users/@me", "/users/@me"),
    ("/gateway/bot", "/gateway/bot"),
])
def test_route_templates(url: str, route: str) -> None:
    assert route_template(yarl.URL(BASE + url), BASE) == route


def test_a_local_api_base_is_stripped_as_well() -> None:
    base = "http://127.0.0.1:4567/api/v10"
    assert route_template(yarl.URL(base + "/channels/9/messages"), base) == "/channels/{id}/messages"
