"""fal's webhook signatures, checked against the fal fake's JWKS over a real socket."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bot.webhooks import fal_signature
from bot.webhooks.fal_signature import FalSignatureVerifier, WebhookRejected
from tests.fakes.fal import FakeFal

BODY = json.dumps({"request_id": "r1", "status": "OK", "payload": {"images": []}}).encode()


@pytest.fixture
async def fal() -> AsyncIterator[FakeFal]:
    server = FakeFal(key="k")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def verifier(fal: FakeFal) -> AsyncIterator[FalSignatureVerifier]:
    async with aiohttp.ClientSession() as session:
        yield FalSignatureVerifier(session, fal.jwks_url)


async def test_a_call_signed_by_fal_passes_and_the_keys_are_fetched_once(
        fal: FakeFal, verifier: FalSignatureVerifier) -> None:
    for _ in range(3):
        await verifier.verify(fal.sign("r1", BODY), BODY)
    assert fal.jwks_fetches == 1


@pytest.mark.parametrize("case", ["tampered body", "other key", "old timestamp", "future timestamp",
                                  "missing header", "garbage signature"])
async def test_a_call_that_is_not_provably_from_fal_is_rejected(
        fal: FakeFal, verifier: FalSignatureVerifier, case: str) -> None:
    body, headers = BODY, fal.sign("r1", BODY)
    if case == "tampered body":
        body = BODY.replace(b'"OK"', b'"ERROR"')
    elif case == "other key":
        headers = fal.sign("r1", BODY, key=Ed25519PrivateKey.generate())
    elif case == "old timestamp":
        headers = fal.sign("r1", BODY, timestamp=int(time.time()) - 301)
    elif case == "future timestamp":
        headers = fal.sign("r1", BODY, timestamp=int(time.time()) + 301)
    elif case == "missing header":
        del headers["X-Fal-Webhook-User-Id"]
    else:
        headers["X-Fal-Webhook-Signature"] = "zz" * 64
    with pytest.raises(WebhookRejected):
        await verifier.verify(headers, body)


async def test_rotated_keys_are_fetched_again_but_not_on_every_bad_call(
        fal: FakeFal, verifier: FalSignatureVerifier, monkeypatch: pytest.MonkeyPatch) -> None:
    await verifier.verify(fal.sign("r1", BODY), BODY)
    fal.signing_key = Ed25519PrivateKey.generate()  # fal rotates its key
    # Within the refetch guard an unknown signer is refused without hammering the JWKS URL...
    with pytest.raises(WebhookRejected):
        await verifier.verify(fal.sign("r1", BODY), BODY)
    assert fal.jwks_fetches == 1
    # ...and once the guard has passed, the new key is fetched and accepted.
    monkeypatch.setattr(fal_signature, "REFETCH_AFTER_S", 0)
    await verifier.verify(fal.sign("r1", BODY), BODY)
    assert fal.jwks_fetches == 2


async def test_an_unreachable_jwks_url_rejects_calls_instead_of_accepting_them() -> None:
    async with aiohttp.ClientSession() as session:
        verifier = FalSignatureVerifier(session, "http://127.0.0.1:9/.well-known/jwks.json")
        key = Ed25519PrivateKey.generate()
        fal = FakeFal(key="k")
        fal.signing_key = key
        with pytest.raises(WebhookRejected):
            await verifier.verify(fal.sign("r1", BODY), BODY)


async def test_made_up_calls_while_fal_is_unreachable_do_not_become_a_stream_of_key_fetches(
        fal: FakeFal, verifier: FalSignatureVerifier) -> None:
    fal.fail_next(503, {"detail": "down"}, times=100, path_contains="jwks")
    for _ in range(20):
        with pytest.raises(WebhookRejected):
            await verifier.verify(fal.sign("r1", BODY, key=Ed25519PrivateKey.generate()), BODY)
    assert len(fal.calls("GET", "jwks")) == 1
