"""Telling "this model is gone at this provider" from "this request was wrong", on a submit and in a free probe.

Vendors retire models every few months (Novita retired GLM Image on 2026-07-07 and about twenty more models in
the weeks after). What a retired endpoint answers is not documented (../shared/docs/providers.md §2.6 [U]), so
the rule is deliberately narrow: the model's own endpoint answering 404 or 410, or an error whose `reason` or
`message` says retired/deprecated. A 4xx about the member's input ("image not found") is not a retirement.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from bot.errors import ModelRetiredError
from bot.providers.http import CLIENT_ERRORS, HttpResponse, ProviderHttp

GONE_STATUSES = frozenset({404, 410})
_RETIRED = re.compile(
    r"retir|deprecat|decommission|discontinu|sunset|end[ -]of[ -]life|no longer (available|supported|offered)",
    re.IGNORECASE)
# Words that make a 404 about the request's own content (an input image, a URL, a file), not the endpoint.
_ABOUT_INPUT = re.compile(r"\b(image|input|file|url|download|prompt|task)s?\b", re.IGNORECASE)
_REASON_CODE = re.compile(r"^[A-Z][A-Z0-9_]{0,39}$")


def _error_fields(body: bytes) -> tuple[str, str]:
    """(reason, message) from Novita's error shape {code, reason, message, metadata}; empty where absent."""
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "", body.decode("utf-8", errors="replace")[:300]
    if not isinstance(data, dict):
        return "", ""
    reason, message = data.get("reason"), data.get("message")
    return (reason if isinstance(reason, str) else "", message if isinstance(message, str) else "")


def says_retired(status: int, body: bytes) -> bool:
    """Does this answer from a model's own endpoint say the model is gone?"""
    reason, message = _error_fields(body)
    if _RETIRED.search(reason) or _RETIRED.search(message):
        return True
    if status not in GONE_STATUSES:
        return False
    # A 404/410 naming the request's own content is about the input; a bare one (or one about the model or
    # the route) is about the endpoint.
    return not (_ABOUT_INPUT.search(reason.replace("_", " ")) or _ABOUT_INPUT.search(message))


def retired_error(provider: str, model: str, instead: str, response: HttpResponse) -> ModelRetiredError:
    """The error for a retired answer. Only our own words and the provider's reason code (an UPPER_SNAKE token,
    never free text) go into it, so nothing the provider wrote needs to be shown."""
    reason, _ = _error_fields(response.body)
    code = f", reason {reason}" if _REASON_CODE.match(reason) else ""
    return ModelRetiredError(
        provider, f"the model {model} is gone at {provider} (HTTP {response.status}{code}); set {instead}",
        model=model, instead=instead, status=response.status)


async def submit_checking_retirement(http: ProviderHttp, url: str, *, model: str, instead: str,
                                     json_body: Any) -> HttpResponse:
    """POST a paid submit once. A retired answer raises ModelRetiredError; any other failure raises exactly
    what the shared HTTP path raises for it."""
    response = await http.request("POST", url, json_body=json_body, idempotent=False, accept=CLIENT_ERRORS)
    if response.status < 400:
        return response
    if says_retired(response.status, response.body):
        raise retired_error(http.provider, model, instead, response)
    raise http.error_for("POST", response, idempotent=False)


@dataclass(frozen=True, slots=True)
class ModelCheck:
    """What a free probe of a model's endpoint says. alive is False when it is probably retired."""

    model: str
    alive: bool | None
    message: str


@runtime_checkable
class ModelProbe(Protocol):
    """An adapter whose model's endpoint can be probed for free (`atelier doctor`)."""

    async def check_model(self) -> ModelCheck: ...


async def probe_endpoint(http: ProviderHttp, url: str, *, model: str, instead: str) -> ModelCheck:
    """POST an empty body to the model's endpoint: the provider refuses it (400) without creating anything, and
    a live endpoint says so by refusing the body, a gone one by 404/410. What the real retired endpoint answers
    is unknown, so a gone answer is reported as "probably retired"."""
    response = await http.request("POST", url, json_body={}, idempotent=False, accept=CLIENT_ERRORS)
    path = url.split("://", 1)[-1].partition("/")[2]
    if response.status >= 400 and says_retired(response.status, response.body):
        return ModelCheck(model, False, f"probably RETIRED MODEL: POST /{path} answered HTTP {response.status}; "
                                        f"set {instead}")
    if response.status in (400, 422):
        return ModelCheck(model, True, f"endpoint answers (HTTP {response.status} to an empty request)")
    return ModelCheck(model, None, f"endpoint answered HTTP {response.status} to an empty request; "
                                   f"whether the model lives is unknown")
