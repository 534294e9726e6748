"""A verified webhook's outcome as JSON, so that the process following the job can use it without asking the
provider again, when another process received the call (bot.webhooks.shared). Only outcomes that name their images
by URL travel: images carried inline (bytes) stay with the process that received them, and the follower looks the
result up itself."""

from __future__ import annotations

from typing import Any

from bot.providers.status import Cancelled, Failed, OutputImage, Succeeded, Terminal


def encode(outcome: Terminal | None) -> dict[str, Any] | None:
    match outcome:
        case Succeeded(outputs=outputs, seed=seed):
            if any(o.data is not None or not o.url for o in outputs):
                return None
            return {"kind": "succeeded", "seed": seed,
                    "outputs": [{"url": o.url, "nsfw": o.nsfw, "mime": o.mime} for o in outputs]}
        case Failed(reason=reason, retryable=retryable, charged=charged, code=code):
            return {"kind": "failed", "reason": reason, "retryable": retryable, "charged": charged, "code": code}
        case Cancelled(reason=reason):
            return {"kind": "cancelled", "reason": reason}
        case _:
            return None


def decode(data: Any) -> Terminal | None:
    """The outcome, or None for anything this version cannot read (the follower then asks the provider)."""
    if not isinstance(data, dict):
        return None
    try:
        match data.get("kind"):
            case "succeeded":
                seed = data.get("seed")
                return Succeeded(outputs=tuple(OutputImage(url=str(o["url"]), nsfw=bool(o.get("nsfw")),
                                                           mime=o.get("mime")) for o in data["outputs"]),
                                 seed=int(seed) if seed is not None else None)
            case "failed":
                charged = data.get("charged")
                return Failed(reason=str(data["reason"]), retryable=bool(data.get("retryable")),
                              charged=None if charged is None else bool(charged), code=data.get("code"))
            case "cancelled":
                return Cancelled(reason=str(data.get("reason", "cancelled")))
    except (KeyError, TypeError, ValueError):
        return None
    return None
