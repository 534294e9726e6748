"""The real `atelier` process against the Novita fake: Seedream 5.0 lite by default, GLM Image by setting, a
retired GLM endpoint, and a process SIGKILLed during Seedream's synchronous call."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.store import open_store
from bot.store.models import JobState, Subject
from tests.conftest import png_bytes
from tests.fakes.base import JobScript
from tests.fakes.fal import FakeFal
from tests.fakes.novita import FakeNovita
from tests.test_cli import ATELIER, atelier, clean_env

SEEDREAM, GLM, TASK_RESULT = "/v3/seedream-5.0-lite", "/v3/async/glm-image", "/v3/async/task-result"


@pytest.fixture
async def novita() -> AsyncIterator[FakeNovita]:
    server = FakeNovita(key="nv-cli-key-789")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def fal() -> AsyncIterator[FakeFal]:
    server = FakeFal(key="fal-cli-key")
    await server.start()
    yield server
    await server.stop()


def novita_env(novita: FakeNovita, **extra: str) -> dict[str, str]:
    return clean_env(NOVITA_API_KEY=novita.key, NOVITA_BASE_URL=novita.base_url, **extra)


async def test_imagine_and_edit_on_seedream_by_default(tmp_path: Path, novita: FakeNovita) -> None:
    env = novita_env(novita)
    code, result, _ = await atelier("job", "imagine", "--prompt", "a lighthouse", "--size", "landscape_16_9",
                                    "--provider", "novita", cwd=tmp_path, env=env)
    assert code == 0, result
    assert result is not None and result["state"] == "succeeded" and result["provider"] == "novita"
    (saved,) = result["files"]
    (made,) = novita.jobs.values()
    assert (tmp_path / saved).read_bytes() == novita.files[made.outputs[0]]
    assert json.loads(novita.calls("POST", SEEDREAM)[0].body)["size"] == "2560x1440"

    photo = tmp_path / "in.png"
    photo.write_bytes(png_bytes(200, 150))
    novita.seedream_counts = [2]
    code, result, _ = await atelier("job", "edit", "--image", str(photo), "--prompt", "winter", "--count", "2",
                                    "--provider", "novita", cwd=tmp_path, env=env)
    assert code == 0, result
    assert result is not None and result["provider"] == "novita" and len(result["files"]) == 2
    body = json.loads(novita.calls("POST", SEEDREAM)[1].body)
    assert len(body["image"]) == 1 and body["sequential_image_generation_options"] == {"max_images": 2}
    assert novita.calls("GET", TASK_RESULT) == []  # a synchronous model: nothing was polled


async def test_an_explicit_size_seedream_cannot_take_is_refused_with_exit_2(tmp_path: Path,
                                                                            novita: FakeNovita) -> None:
    code, result, _ = await atelier("job", "imagine", "--prompt", "x", "--size", "1024x1024", "--provider",
                                    "novita", cwd=tmp_path, env=novita_env(novita))
    assert code == 2 and result is not None and "3,686,400 to 10,404,496 pixels" in result["error"]
    assert novita.requests == []


async def test_glm_image_by_setting_still_runs_the_async_glm_path(tmp_path: Path, novita: FakeNovita) -> None:
    novita.script = JobScript(queue_polls=1, running_polls=1)
    code, result, _ = await atelier("job", "imagine", "--prompt", "a fox", "--provider", "novita", cwd=tmp_path,
                                    env=novita_env(novita, NOVITA_MODEL="glm-image"))
    assert code == 0, result
    assert result is not None and result["provider"] == "novita" and len(result["files"]) == 1
    assert json.loads(novita.calls("POST", GLM)[0].body) == {"prompt": "a fox", "size": "1280x1280",
                                                             "quality": "hd", "watermark_enabled": True}
    assert len(novita.calls("GET", TASK_RESULT)) >= 2 and novita.calls("POST", SEEDREAM) == []


async def test_a_retired_glm_moves_the_job_on_says_so_once_and_doctor_shows_it(
        tmp_path: Path, novita: FakeNovita, fal: FakeFal) -> None:
    novita.retire_glm(410)
    env = novita_env(novita, NOVITA_MODEL="glm-image", FAL_KEY=fal.key, FAL_QUEUE_URL=fal.base_url,
                     QUOTA_DAILY="10")
    code, result, err = await atelier("job", "imagine", "--prompt", "a fox", "--user", "ann", cwd=tmp_path, env=env)
    assert code == 0, (result, err)
    assert result is not None and result["provider"] == "fal" and len(result["files"]) == 1
    retired_lines = [line for line in err.splitlines() if "glm-image is gone" in line]
    assert len(retired_lines) == 1 and "NOVITA_MODEL=seedream-5.0-lite" in retired_lines[0]

    # A second one-shot run reads the mark from the store: Novita is not tried, nothing more is said.
    code, result, err = await atelier("job", "imagine", "--prompt", "a hare", "--user", "ann", cwd=tmp_path, env=env)
    assert code == 0 and result is not None and result["provider"] == "fal"
    assert "glm-image" not in err
    assert len(novita.calls("POST", GLM)) == 1 and len(fal.calls("POST")) == 2

    store = await open_store(f"sqlite:///{tmp_path}/data/atelier.db")
    try:
        jobs = await store.list_jobs(Subject.cli("ann"))
    finally:
        await store.close()
    assert [(j.provider, j.state, j.cost, j.refunded, j.attempts) for j in jobs] == \
        [("fal", JobState.SUCCEEDED, 1, False, 1), ("fal", JobState.SUCCEEDED, 1, False, 2)]
    proc = await asyncio.create_subprocess_exec(ATELIER, "quota", "ann", cwd=tmp_path, env=env,
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert "2 of 10 images used today" in out.decode()  # one image per job: nothing charged twice

    proc = await asyncio.create_subprocess_exec(ATELIER, "doctor", cwd=tmp_path, env=env,
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    text = out.decode()
    assert proc.returncode == 1, text
    assert "novita  model glm-image: probably RETIRED MODEL" in text and "NOVITA_MODEL=seedream-5.0-lite" in text


async def test_doctor_says_the_default_model_answers(tmp_path: Path, novita: FakeNovita) -> None:
    proc = await asyncio.create_subprocess_exec(ATELIER, "doctor", cwd=tmp_path, env=novita_env(novita),
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    text = out.decode()
    assert proc.returncode == 0, text
    assert "novita  configured; key accepted" in text
    assert "novita  model seedream-5.0-lite: endpoint answers (HTTP 400 to an empty request)" in text
    assert "edit     runs on: novita" in text and novita.jobs == {}


async def test_sigkill_during_the_synchronous_call_ends_interrupted_and_refunded(
        tmp_path: Path, novita: FakeNovita) -> None:
    novita.hold_paths = [SEEDREAM]  # the call never answers while the process lives
    env = novita_env(novita)
    proc = await asyncio.create_subprocess_exec(ATELIER, "job", "imagine", "--prompt", "x", "--user", "kim",
                                                "--provider", "novita", cwd=tmp_path, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    deadline = time.monotonic() + 20
    while not novita.calls("POST", SEEDREAM):
        assert time.monotonic() < deadline, "the call never reached the fake"
        await asyncio.sleep(0.02)
    store = await open_store(f"sqlite:///{tmp_path}/data/atelier.db")
    try:
        (during,) = await store.list_jobs(Subject.cli("kim"))
        assert during.state is JobState.RUNNING  # shown as running while the call lasts
        proc.kill()
        await proc.wait()
        novita.release.set()

        code, result, _ = await atelier("job", "resume", str(during.id), cwd=tmp_path, env=env)
        assert code == 1, result
        assert result is not None and result["state"] == "failed" and result["files"] == []
        assert "interrupted" in result["error"] and "not sent again" in result["error"]
        job = await store.get_job(during.id)
    finally:
        await store.close()
    assert job is not None and job.state is JobState.FAILED and job.error_code == "interrupted" and job.refunded
    assert len(novita.calls("POST", SEEDREAM)) == 1  # exactly one submit, never sent again
    proc = await asyncio.create_subprocess_exec(ATELIER, "quota", "kim", cwd=tmp_path, env=env,
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert "0 of 25 images used today" in out.decode()


@pytest.mark.parametrize(("name", "value", "message"), [
    ("NOVITA_MODEL", "dall-e", "NOVITA_MODEL"),
    ("NOVITA_SYNC_TIMEOUT_S", "0", "NOVITA_SYNC_TIMEOUT_S"),
    ("RETIRED_MODEL_MARK_S", "-5", "RETIRED_MODEL_MARK_S"),
])
async def test_a_bad_novita_setting_is_refused_with_exit_2_and_nothing_is_sent(
        tmp_path: Path, novita: FakeNovita, name: str, value: str, message: str) -> None:
    code, result, err = await atelier("job", "imagine", "--prompt", "x", "--provider", "novita", cwd=tmp_path,
                                      env=novita_env(novita, **{name: value}))
    assert code == 2 and result is not None and message in result["error"] and "configuration error" in err
    assert novita.requests == [] and not (tmp_path / "data").exists()


async def test_ctrl_c_during_the_synchronous_call_exits_130_promptly_and_refunds(
        tmp_path: Path, novita: FakeNovita) -> None:
    # The call cannot be cancelled at Novita and its answer is no longer wanted: nothing is left to wait for.
    novita.hold_paths = [SEEDREAM]
    env = novita_env(novita)
    interrupted: list[float] = []

    def call_under_way() -> bool:  # Ctrl-C once the call has reached Novita (it is held there)
        if novita.calls("POST", SEEDREAM):
            interrupted.append(time.monotonic())
            return True
        return False

    code, result, _ = await atelier("job", "imagine", "--prompt", "x", "--provider", "novita", cwd=tmp_path,
                                    env=env, interrupt_when=call_under_way)
    took = time.monotonic() - interrupted[0]
    assert code == 130 and result is not None and result["state"] == "cancelled", result
    assert took < 6, f"Ctrl-C took {took:.1f} s to end the command"
    novita.release.set()
    store = await open_store(f"sqlite:///{tmp_path}/data/atelier.db")
    try:
        job = await store.get_job(result["job_id"])
    finally:
        await store.close()
    assert job is not None and job.state is JobState.CANCELLED and job.refunded
    assert len(novita.calls("POST", SEEDREAM)) == 1
