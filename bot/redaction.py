"""Redaction of secrets from any text a provider supplies, applied once where that text becomes Atelier's.

Providers sometimes echo what they were sent ("Invalid header Authorization: Key sk-..."). Every error and
failure reason is built from such text, so the redaction happens where those values are constructed
(`ProviderError`, `Failed`, `Cancelled`, `Running.message`) and where a job's error message is stored: an adapter
never has to remember it, and a new adapter is covered without calling anything.

Secrets are registered by the component that holds them (`ProviderHttp` registers each provider's key). Beside
the exact values, credential-looking tokens (`Key ...`, `Bearer ...`, `api_key=...`) are masked whatever their
value, and a fragment of a registered secret left at either end of a truncated text is masked too.
"""

from __future__ import annotations

import re
import threading

MASK = "***"
# A shorter value is not treated as a secret: masking it would garble ordinary words.
MIN_SECRET_CHARS = 8
# A fragment of a secret cut off by truncation is masked from this many characters on.
MIN_FRAGMENT_CHARS = 6

_secrets: set[str] = set()
_lock = threading.Lock()

# Credential schemes in headers (`Authorization: Key …`, `Bearer …`) and key=value spellings in query strings
# or echoed JSON. The value is what follows, up to whitespace, a quote or a delimiter.
_TOKEN = r"[A-Za-z0-9._~+/=:\-]{6,}"  # noqa: S105 - a pattern, not a password
_PATTERNS = (
    re.compile(rf"\b(Key|Bearer|Basic|Token|KEY|BEARER)(\s+)({_TOKEN})"),
    re.compile(
        rf"\b(api[_-]?key|access[_-]?token|token|secret|password|x-api-key|ocp-apim-subscription-key)"
        rf"([\"']?\s*[:=]\s*[\"']?)({_TOKEN})",
        re.IGNORECASE,
    ),
)


def _credential_like(value: str) -> bool:
    """A value that looks like a key, not a word ("Key provided", "token expired" stay as they are)."""
    return (len(value) >= 12 and any(c.isdigit() for c in value)) or len(value) >= 24


def register_secret(value: str | None) -> None:
    """Remember a secret so that it is masked wherever provider text carries it (its parts too: fal keys are
    `id:secret`, and a provider may echo either half)."""
    if not value:
        return
    parts = {value, *value.split(":")}
    with _lock:
        _secrets.update(p for p in parts if len(p) >= MIN_SECRET_CHARS)


def redact(text: str) -> str:
    """`text` with every registered secret, credential token and cut-off secret fragment masked."""
    if not text:
        return text
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)  # longest first: a key before its own halves
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}" if _credential_like(m.group(3))
                           else m.group(0), text)
    return _mask_fragments(text, secrets)


def _mask_fragments(text: str, secrets: list[str]) -> str:
    """A text truncated in the middle of a secret ends with its start (or starts with its end)."""
    for secret in secrets:
        # A quoted, cut-off value ends with its quote (`'sk-abc'`): look before any closing punctuation.
        core = text.rstrip(" '\".,;)]}")
        for n in range(len(secret) - 1, MIN_FRAGMENT_CHARS - 1, -1):
            if core.endswith(secret[:n]):
                text = core[:-n] + MASK + text[len(core):]
                break
        for n in range(len(secret) - 1, MIN_FRAGMENT_CHARS - 1, -1):
            if text.startswith(secret[-n:]):
                text = MASK + text[n:]
                break
    return text
