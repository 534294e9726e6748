"""A provider that echoes the key in its answers: the real `atelier` command, the fakes on 127.0.0.1 and a real
SQLite file. Whatever the provider says, the key reaches neither the stored job, the JSON line, `atelier jobs`
nor stderr."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.redaction import redact, register_secret
from bot.store import open_store
from tests.fakes.base import JobScript
from tests.fakes.fal import FakeFal
from tests.fakes.novita import FakeNovita
from tests.test_cli import ATELIER, atelier, clean_env

# Long enough that an unknown-status message (cut at 40 characters) cuts it in the middle.
FAL_KEY = "fal-id-0001:fal-secret-0123456789abcdefghijklmnopqrstuv"
NOVITA_KEY = "sk_novita_0123456789abcdefghijklmnop"


@pytest.fixture
async def fal() -> AsyncIterator[FakeFal]:
    server = FakeFal(key=FAL_KEY)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def novita() -> AsyncIterator[FakeNovita]:
    server = FakeNovita(key=NOVITA_KEY)
    await server.start()
    yield server
    await server.stop()


async def seen_everywhere(tmp_path: Path, env: dict[str, str], provider: str) -> str:
    """Run one imagine job that fails; return everything a person could read about it afterwards."""
    code, result, err = await atelier("job", "imagine", "--prompt", "x", "--provider", provider, cwd=tmp_path,
                                      env=env)
    assert code == 1 and result is not None and result["state"] == "failed", result
    assert result["error"], "the failure must still say something"
    texts = [json.dumps(result), err]
    for extra in ((), ("--json",)):
        proc = await asyncio.create_subprocess_exec(ATELIER, "jobs", "--all", *extra, cwd=tmp_path, env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, jobs_err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0
        texts += [out.decode(), jobs_err.decode()]
    store = await open_store(f"sqlite:///{tmp_path}/data/atelier.db")
    try:
        jobs = await store.list_jobs(None, limit=5)
    finally:
        await store.close()
    texts += [job.error_message or "" for job in jobs]
    assert any(job.error_message for job in jobs)
    return "\n".join(texts)


def assert_no_key(text: str, key: str) -> None:
    fragments = {key, *key.split(":"), key[:12], key[-12:]}
    leaked = [f for f in fragments if f in text]
    assert not leaked, f"{leaked} leaked in: {text[:2000]}"


async def test_fal_completed_with_an_error_that_echoes_the_key(tmp_path: Path, fal: FakeFal) -> None:
    fal.infra_error = (f"upstream refused header Authorization: Key {FAL_KEY}", "runner_failure")
    env = clean_env(FAL_KEY=FAL_KEY, FAL_QUEUE_URL=fal.base_url)
    text = await seen_everywhere(tmp_path, env, "fal")
    assert_no_key(text, FAL_KEY)
    assert "upstream refused header" in text  # the provider's words, minus the key


async def test_fal_result_4xx_whose_detail_echoes_the_bare_key(tmp_path: Path, fal: FakeFal) -> None:
    fal.script = JobScript(outcome="fail", fail_reason=f"credential {FAL_KEY} may not use this model")
    env = clean_env(FAL_KEY=FAL_KEY, FAL_QUEUE_URL=fal.base_url)
    text = await seen_everywhere(tmp_path, env, "fal")
    assert_no_key(text, FAL_KEY)
    assert "may not use this model" in text


async def test_fal_unknown_status_cut_in_the_middle_of_the_key(tmp_path: Path, fal: FakeFal) -> None:
    fal.fail_next(200, {"status": f"X {FAL_KEY}", "logs": None}, path_contains="/status", times=10)
    env = clean_env(FAL_KEY=FAL_KEY, FAL_QUEUE_URL=fal.base_url)
    text = await seen_everywhere(tmp_path, env, "fal")
    assert_no_key(text, FAL_KEY)
    assert "unknown status" in text


async def test_novita_failed_task_whose_reason_echoes_the_key(tmp_path: Path, novita: FakeNovita) -> None:
    novita.script = JobScript(outcome="fail", fail_reason=f"Bearer {NOVITA_KEY} is over its limit")
    env = clean_env(NOVITA_API_KEY=NOVITA_KEY, NOVITA_BASE_URL=novita.base_url,
                    NOVITA_MODEL="glm-image")  # the async task API, whose failures carry a `reason`
    text = await seen_everywhere(tmp_path, env, "novita")
    assert_no_key(text, NOVITA_KEY)
    assert "over its limit" in text


def test_redaction_masks_registered_values_tokens_and_cut_off_fragments() -> None:
    secret = "zz-registered-secret-0123456789"
    register_secret(secret)
    assert redact(f"bad key {secret}!") == "bad key ***!"
    assert redact("Authorization: Bearer abcdef123456") == "Authorization: Bearer ***"
    assert redact('{"api_key": "unregistered-987654"}') == '{"api_key": "***"}'
    assert redact(f"unknown status 'X {secret[:20]}'") == "unknown status 'X ***'"
    assert redact("a Key to the kingdom") == "a Key to the kingdom"  # ordinary words stay
    assert redact("Invalid key provided; token expired") == "Invalid key provided; token expired"
    assert redact("Token: verylongunregisteredsecretvalue") == "Token: ***"


def test_every_provider_text_value_is_redacted_where_it_is_built() -> None:
    from bot.errors import ProviderRejectedError
    from bot.providers.status import Cancelled, Failed, Running

    secret = "zz-built-secret-abcdef012345"
    register_secret(secret)
    texts = [str(ProviderRejectedError("acme", f"HTTP 400: bad key {secret}")),
             Failed(reason=f"failed for {secret}").reason, Cancelled(reason=f"cancelled {secret}").reason,
             Running(message=f"log line with Key {secret}").message or ""]
    assert all(secret not in t and "***" in t for t in texts), texts
