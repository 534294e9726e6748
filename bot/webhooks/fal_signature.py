"""Verifying fal's webhook calls: Ed25519 over "{request_id}\\n{user_id}\\n{timestamp}\\n{sha256(body)}", with
public keys from fal's JWKS (cached), and a timestamp within five minutes of now (../shared/docs/providers.md
§1.6). A call that fails any check is refused: it could be anyone."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import time
from collections.abc import Callable, Mapping

import aiohttp
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

log = logging.getLogger(__name__)

TIMESTAMP_TOLERANCE_S = 300
KEYS_TTL_S = 24 * 3600  # fal's advice: keys may be cached for up to a day
REFETCH_AFTER_S = 300  # an unknown signer makes us look for new keys, but not more often than this
FAILED_RETRY_S = 30  # with no keys at all (fal unreachable at start), try again at most this often
FETCH_TIMEOUT_S = 10.0
HEADERS = ("X-Fal-Webhook-Request-Id", "X-Fal-Webhook-User-Id", "X-Fal-Webhook-Timestamp",
           "X-Fal-Webhook-Signature")


class WebhookRejected(Exception):
    """The call is not provably from fal; the message says why (never any secret)."""


class FalSignatureVerifier:
    def __init__(self, session: aiohttp.ClientSession, jwks_url: str, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.session = session
        self.jwks_url = jwks_url
        self.clock = clock
        self._keys: list[Ed25519PublicKey] = []
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last attempt, successful or not
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        missing = [name for name in HEADERS if not headers.get(name)]
        if missing:
            raise WebhookRejected(f"missing {', '.join(missing)}")
        request_id, user_id, timestamp, signature = (headers[name] for name in HEADERS)
        try:
            sent_at = int(timestamp)
            signature_bytes = bytes.fromhex(signature)
        except ValueError as exc:
            raise WebhookRejected("malformed timestamp or signature") from exc
        if abs(self.clock() - sent_at) > TIMESTAMP_TOLERANCE_S:
            raise WebhookRejected("timestamp outside the five-minute window")
        message = f"{request_id}\n{user_id}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()
        keys, just_fetched = await self._current_keys()
        if self._matches(keys, signature_bytes, message):
            return
        # Perhaps fal rotated its keys since we fetched them.
        if not just_fetched and await self._refresh() and \
                self._matches(self._keys, signature_bytes, message):
            return
        raise WebhookRejected("signature does not match any of fal's published keys")

    @property
    def key_count(self) -> int:
        return len(self._keys)

    async def refresh_keys(self) -> bool:
        """Fetch the keys now (the doctor's check); False if they could not be fetched."""
        return await self._refresh(after_s=0.0)

    @staticmethod
    def _matches(keys: list[Ed25519PublicKey], signature: bytes, message: bytes) -> bool:
        for key in keys:
            try:
                key.verify(signature, message)
            except InvalidSignature:
                continue
            return True
        return False

    async def _current_keys(self) -> tuple[list[Ed25519PublicKey], bool]:
        """The keys, fetched first when there are none yet or they are a day old; and whether that fetch just
        happened (then a failed check does not fetch again)."""
        due = self._fetched_at is None or self.clock() - self._fetched_at > KEYS_TTL_S
        fetched = due and await self._refresh(after_s=0.0 if self._keys else FAILED_RETRY_S)
        return self._keys, fetched

    async def _refresh(self, *, after_s: float | None = None) -> bool:
        """Fetch the JWKS again; False when the last attempt (successful or not) was under `after_s` ago, so
        that made-up calls cannot turn into a stream of fetches, or when the fetch failed."""
        async with self._lock:
            wait = REFETCH_AFTER_S if after_s is None else after_s  # looked up now, so it can be tuned
            if self._attempted_at is not None and self.clock() - self._attempted_at < wait:
                return False
            self._attempted_at = self.clock()
            try:
                timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
                async with self.session.get(self.jwks_url, timeout=timeout) as response:
                    response.raise_for_status()
                    document = await response.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.warning("could not fetch fal's webhook keys from %s: %s", self.jwks_url, exc)
                return False
            self._keys = parse_jwks(document)
            self._fetched_at = self.clock()
            self.fetches += 1
            if not self._keys:
                log.warning("fal's JWKS at %s holds no Ed25519 keys", self.jwks_url)
            return True


def parse_jwks(document: object) -> list[Ed25519PublicKey]:
    keys: list[Ed25519PublicKey] = []
    entries = document.get("keys") if isinstance(document, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
            continue
        x = entry.get("x")
        if not isinstance(x, str):
            continue
        try:
            raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
            keys.append(Ed25519PublicKey.from_public_bytes(raw))
        except (ValueError, binascii.Error):
            continue
    return keys
