"""The real `atelier` command, run as a subprocess with its base URLs pointed at the fakes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.conftest import png_bytes
from tests.fakes.base import JobScript
from tests.fakes.fal import FakeFal

ATELIER = str(Path(sys.executable).parent / "atelier")
SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "portrait.jpg"


def clean_env(**extra: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), "POLL_MIN_S": "0.05",
           "POLL_MAX_S": "0.2", "HTTP_BACKOFF_BASE_S": "0.01"}
    env.update(extra)
    return env


async def atelier(*args: str, cwd: Path, env: dict[str, str], timeout: float = 60,
                  interrupt_when: Callable[[], bool] | None = None) -> tuple[int, dict[str, Any] | None, str]:
    """Run `atelier ARGS` to its end; with `interrupt_when`, press Ctrl-C (SIGINT) as soon as it says so."""
    proc = await asyncio.create_subprocess_exec(ATELIER, *args, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    if interrupt_when is not None:
        deadline = time.monotonic() + timeout
        while not interrupt_when():
            assert time.monotonic() < deadline, "the moment to interrupt never came"
            await asyncio.sleep(0.02)
        proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    lines = out.decode().strip().splitlines()
    assert len(lines) <= 1, f"stdout must be one JSON line, got {lines!r}"
    result = json.loads(lines[0]) if lines else None
    assert proc.returncode is not None
    return proc.returncode, result, err.decode()


@pytest.fixture
async def fal() -> AsyncIterator[FakeFal]:
    server = FakeFal(key="fal-cli-key")
    await server.start()
    yield server
    await server.stop()


async def test_offline_filter_on_the_shipped_sample(tmp_path: Path) -> None:
    code, result, _ = await atelier("job", "filter", "--image", str(SAMPLE), "--name", "noir", "--out",
                                    str(tmp_path / "o"), cwd=tmp_path, env=clean_env())
    assert code == 0, result
    assert result is not None and result["state"] == "succeeded" and result["provider"] == "local"
    assert result["error"] is None and result["elapsed_s"] >= 0
    (path,) = result["files"]
    with Image.open(tmp_path / path if not Path(path).is_absolute() else path) as img:
        assert img.size == (640, 800)
        assert img.convert("RGB").getpixel((320, 250)) == img.convert("L").convert("RGB").getpixel((320, 250))


async def test_imagine_and_edit_against_the_fal_fake(tmp_path: Path, fal: FakeFal) -> None:
    env = clean_env(FAL_KEY=fal.key, FAL_QUEUE_URL=fal.base_url)
    code, result, _ = await atelier("job", "imagine", "--prompt", "a fox", "--count", "2", "--seed", "5",
                                    "--size", "portrait_4_3", cwd=tmp_path, env=env)
    assert code == 0, result
    assert result is not None and result["provider"] == "fal" and result["seed"] == 5
    assert [Path(tmp_path / f).read_bytes() for f in result["files"]] == \
        [fal.files[n] for job in fal.jobs.values() for n in job.outputs]
    photo = tmp_path / "in.png"
    photo.write_bytes(png_bytes(200, 150))
    code, result, _ = await atelier("job", "edit", "--image", str(photo), "--image", str(photo), "--prompt",
                                    "winter", cwd=tmp_path, env=env)
    assert code == 0 and result is not None and len(result["files"]) == 1


@pytest.mark.parametrize(("args", "message"), [
    (["job", "filter", "--image", "missing.png", "--name", "noir"], "does not exist"),
    (["job", "filter", "--image", "notes.png", "--name", "noir"], "not an image"),
    (["job", "filter", "--image", "empty.png", "--name", "noir"], "empty"),
    (["job", "filter", "--image", "in.png", "--name", "glitter"], "Unknown filter"),
    (["job", "imagine", "--prompt", "x" * 1001, "--provider", "fal"], "1000"),
    (["job", "imagine", "--prompt", "x", "--provider", "dalle"], "Unknown provider"),
    (["job", "imagine", "--prompt", "x", "--provider", "novita"], "not configured"),
    (["job", "tryon", "--person", "in.png", "--garment", "in.png", "--provider", "fal"], "does not offer tryon"),
    (["job", "imagine", "--prompt", "x", "--size", "1000x1000", "--provider", "fal"], "multiples of 32"),
    (["job", "imagine", "--prompt", "x", "--size", "huge", "--provider", "fal"], "Unknown size"),
    (["job", "imagine", "--prompt", "x", "--count", "9", "--provider", "fal"], "count"),
    (["job", "imagine"], "--prompt"),
])
async def test_bad_input_is_refused_with_exit_2_and_nothing_is_sent(
        tmp_path: Path, fal: FakeFal, args: list[str], message: str) -> None:
    (tmp_path / "notes.png").write_text("just text")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "in.png").write_bytes(png_bytes())
    code, result, err = await atelier(*args, cwd=tmp_path, env=clean_env(FAL_KEY=fal.key, FAL_QUEUE_URL=fal.base_url))
    assert code == 2
    assert result is not None and result["state"] == "failed" and message in result["error"]
    assert message in err
    assert fal.requests == []


async def test_a_failed_job_exits_1_with_the_providers_reason(tmp_path: Path, fal: FakeFal) -> None:
    fal.script = JobScript(outcome="fail", fail_reason="Content policy violation")
    code, result, _ = await atelier("job", "imagine", "--prompt", "x", cwd=tmp_path,
                                    env=clean_env(FAL_KEY=fal.key, FAL_QUEUE_URL=fal.base_url))
    assert code == 1 and result is not None and "Content policy violation" in result["error"]


async def test_a_rejected_key_names_the_provider_and_hides_the_key(tmp_path: Path, fal: FakeFal) -> None:
    code, result, err = await atelier("job", "imagine", "--prompt", "x", cwd=tmp_path,
                                      env=clean_env(FAL_KEY="sk-wrong-0001", FAL_QUEUE_URL=fal.base_url))
    assert code == 1 and result is not None and "fal" in result["error"]
    assert "sk-wrong-0001" not in json.dumps(result) and "sk-wrong-0001" not in err


async def test_ctrl_c_cancels_at_the_provider_and_exits_130(tmp_path: Path, fal: FakeFal) -> None:
    fal.script = JobScript(outcome="never")
    # Ctrl-C once the job is at fal and being followed (its first status poll has arrived).
    code, result, _ = await atelier("job", "imagine", "--prompt", "x", cwd=tmp_path,
                                    interrupt_when=lambda: bool(fal.calls("GET", "/status")),
                                    env=clean_env(FAL_KEY=fal.key, FAL_QUEUE_URL=fal.base_url))
    assert code == 130 and result is not None and result["state"] == "cancelled"
    assert len(fal.calls("PUT", "/cancel")) == 1


async def test_filters_and_doctor(tmp_path: Path, fal: FakeFal) -> None:
    proc = await asyncio.create_subprocess_exec(ATELIER, "filters", cwd=tmp_path, env=clean_env(),
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    assert "noir" in out.decode() and "local" in out.decode()
    proc = await asyncio.create_subprocess_exec(ATELIER, "doctor", cwd=tmp_path,
                                                env=clean_env(FAL_KEY="bad", FAL_QUEUE_URL=fal.base_url),
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    text = out.decode()
    assert proc.returncode == 1
    assert "fal     configured; KEY REJECTED" in text and "glam    not configured" in text
    assert "webhooks off: jobs are polled" in text


async def test_doctor_checks_that_fals_webhook_keys_can_be_fetched(tmp_path: Path, fal: FakeFal) -> None:
    base = {"FAL_KEY": fal.key, "FAL_QUEUE_URL": fal.base_url, "WEBHOOK_PUBLIC_URL": "https://atelier.example.com"}
    for jwks, code, line in ((fal.jwks_url, 0, "fal     webhook keys: 1 fetched"),
                             ("http://127.0.0.1:9/jwks.json", 1, "fal     webhook keys: COULD NOT BE FETCHED")):
        proc = await asyncio.create_subprocess_exec(ATELIER, "doctor", cwd=tmp_path,
                                                    env=clean_env(**base, FAL_JWKS_URL=jwks),
                                                    stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        text = out.decode()
        assert proc.returncode == code, text
        assert "providers call https://atelier.example.com/webhooks/<provider>" in text and line in text


async def test_eight_processes_at_once_with_a_daily_quota_of_three_admit_exactly_three(tmp_path: Path) -> None:
    env = clean_env(QUOTA_DAILY="3", QUOTA_CONCURRENT="50")
    runs = [atelier("job", "filter", "--image", str(SAMPLE), "--name", "sepia", "--user", "carol", cwd=tmp_path,
                    env=env) for _ in range(8)]
    results = await asyncio.gather(*runs)
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 0, 0, 2, 2, 2, 2, 2]
    refused = [r for code, r, _ in results if code == 2]
    assert all(r is not None and "3 of your 3 images" in r["error"] and "resets" in r["error"] for r in refused)
    code, _, _ = await atelier("job", "filter", "--image", str(SAMPLE), "--name", "sepia", "--user", "dave",
                               cwd=tmp_path, env=env)
    assert code == 0  # another user's quota is their own


async def test_jobs_lists_cli_jobs_and_quota_sets_an_override(tmp_path: Path) -> None:
    env = clean_env()
    code, result, _ = await atelier("job", "filter", "--image", str(SAMPLE), "--name", "noir", "--user", "erin",
                                    cwd=tmp_path, env=env)
    assert code == 0 and result is not None
    proc = await asyncio.create_subprocess_exec(ATELIER, "jobs", "--user", "erin", "--json", cwd=tmp_path, env=env,
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    (listed,) = [json.loads(line) for line in out.decode().splitlines()]
    assert listed["job_id"] == result["job_id"] and listed["state"] == "succeeded"
    proc = await asyncio.create_subprocess_exec(ATELIER, "quota", "erin", "--daily", "1", cwd=tmp_path, env=env,
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert "1 of 1 images used today, 0 left" in out.decode()
    code, result, _ = await atelier("job", "filter", "--image", str(SAMPLE), "--name", "noir", "--user", "erin",
                                    cwd=tmp_path, env=env)
    assert code == 2 and result is not None and "used 1 of your 1 image today" in result["error"]


async def test_resume_finishes_a_killed_cli_job_without_resubmitting(tmp_path: Path, fal: FakeFal) -> None:
    fal.script = JobScript(duration_s=3.0)
    env = clean_env(FAL_KEY=fal.key, FAL_QUEUE_URL=fal.base_url)
    proc = await asyncio.create_subprocess_exec(ATELIER, "job", "imagine", "--prompt", "x", cwd=tmp_path, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    deadline = asyncio.get_running_loop().time() + 20
    while not fal.calls("GET", "/status"):
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    proc.kill()
    await proc.wait()
    code, result, _ = await atelier("job", "resume", "1", "--out", str(tmp_path / "later"), cwd=tmp_path, env=env)
    assert code == 0, result
    assert result is not None and result["state"] == "succeeded" and len(result["files"]) == 1
    assert len(fal.calls("POST")) == 1


async def test_filter_and_tryon_against_the_glam_fake(tmp_path: Path) -> None:
    from tests.fakes.glam import FakeGlam

    glam = FakeGlam(key="glam-cli-key")
    await glam.start()
    try:
        env = clean_env(GLAM_API_KEY=glam.key, GLAM_BASE_URL=glam.base_url)
        photo = tmp_path / "me.png"
        photo.write_bytes(png_bytes(160, 200))
        code, result, _ = await atelier("job", "filter", "--image", str(photo), "--name", "real_sunset",
                                        cwd=tmp_path, env=env)
        assert code == 0, result
        assert result is not None and result["provider"] == "glam"
        code, result, _ = await atelier("job", "tryon", "--person", str(photo), "--garment", str(SAMPLE),
                                        "--mask", "upper", cwd=tmp_path, env=env)
        assert code == 0, result
        assert result is not None and len(result["files"]) == 1
        tryon = json.loads(glam.calls("POST", "/tryon")[0].body)
        assert tryon["mask_type"] == "upper"
        # A name only the local provider has is refused by Glam's list before anything is submitted.
        code, result, _ = await atelier("job", "filter", "--image", str(photo), "--name", "noir", "--provider",
                                        "glam", cwd=tmp_path, env=env)
        assert code == 2 and result is not None and "Unknown filter" in result["error"]
        assert len(glam.calls("POST", "/generate")) == 1
    finally:
        await glam.stop()


async def test_edit_against_the_pixazo_fake(tmp_path: Path) -> None:
    from tests.fakes.pixazo import FakePixazo

    pixazo = FakePixazo(key="pixazo-cli-key")
    await pixazo.start()
    try:
        env = clean_env(PIXAZO_API_KEY=pixazo.key, PIXAZO_BASE_URL=pixazo.base_url)
        code, result, _ = await atelier("job", "edit", "--image", str(SAMPLE), "--prompt", "autumn", "--count", "2",
                                        cwd=tmp_path, env=env)
        assert code == 0, result
        assert result is not None and result["provider"] == "pixazo" and len(result["files"]) == 2
    finally:
        await pixazo.stop()


async def test_an_image_given_as_a_url_is_downloaded_and_checked(tmp_path: Path, fal: FakeFal) -> None:
    fal.files["in.png"] = png_bytes(300, 200)
    fal.files["bad.png"] = b"not an image at all"
    env = clean_env(FAL_KEY=fal.key, FAL_QUEUE_URL=fal.base_url)
    code, result, _ = await atelier("job", "edit", "--image", f"{fal.base_url}/_files/in.png", "--prompt", "x",
                                    cwd=tmp_path, env=env)
    assert code == 0, result
    code, result, _ = await atelier("job", "edit", "--image", f"{fal.base_url}/_files/bad.png", "--prompt", "x",
                                    cwd=tmp_path, env=env)
    assert code == 2 and result is not None and "not an image" in result["error"]
    code, result, _ = await atelier("job", "edit", "--image", f"{fal.base_url}/_files/gone.png", "--prompt", "x",
                                    cwd=tmp_path, env=env)
    assert code == 2 and result is not None and "HTTP 404" in result["error"]
    assert len(fal.calls("POST")) == 1


async def test_per_operation_deadline_from_settings(tmp_path: Path, fal: FakeFal) -> None:
    fal.script = JobScript(outcome="never")
    env = clean_env(FAL_KEY=fal.key, FAL_QUEUE_URL=fal.base_url, JOB_DEADLINES='{"imagine": 1}')
    code, result, _ = await atelier("job", "imagine", "--prompt", "x", cwd=tmp_path, env=env)
    assert code == 1 and result is not None and "deadline" in result["error"]
    assert len(fal.calls("PUT", "/cancel")) == 1


async def test_run_without_a_token_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(ATELIER, "run", cwd=tmp_path, env=clean_env(),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode == 2
    assert err.decode().strip().count("\n") == 0 and "DISCORD_TOKEN is not set" in err.decode()


async def test_a_rejected_token_is_one_line_and_exit_2(tmp_path: Path) -> None:
    from aiohttp import web

    async def unauthorized(request: web.Request) -> web.Response:
        return web.Response(status=401, text='{"message": "401: Unauthorized", "code": 0}',
                            content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", unauthorized)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        env = clean_env(DISCORD_TOKEN="not-a-real-token", DISCORD_API_BASE=f"http://127.0.0.1:{port}/api/v10")
        proc = await asyncio.create_subprocess_exec(ATELIER, cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        await runner.cleanup()
    lines = [line for line in err.decode().splitlines() if line.strip()]
    assert proc.returncode == 2
    assert lines == ["atelier: Discord rejected DISCORD_TOKEN (401 Unauthorized): copy the bot token again from the "
                     "developer portal."]
    assert "not-a-real-token" not in err.decode()


def test_the_readme_invite_link_asks_for_exactly_the_permissions_the_bot_uses() -> None:
    from bot.discord_bot import PERMISSIONS

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert f"permissions={PERMISSIONS.value}" in readme


async def test_run_with_the_webhook_port_taken_says_so_and_exits(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = await atelier("run", cwd=tmp_path, env=clean_env(
            DISCORD_TOKEN="token", DISCORD_API_BASE="http://127.0.0.1:9/api/v10",
            WEBHOOK_PUBLIC_URL="https://atelier.example.com", WEBHOOK_HOST="127.0.0.1", WEBHOOK_PORT=str(port)))
    assert code == 2
    assert f"cannot bind 127.0.0.1:{port}" in err and "WEBHOOK_PORT" in err and "Traceback" not in err


@pytest.mark.parametrize(("args", "message"), [
    (["quota", "bob", "--daily", "-5"], "argument --daily: must be 0 or more, not -5"),
    (["quota", "bob", "--concurrent", "-1"], "argument --concurrent: must be 0 or more, not -1"),
    (["quota", "bob", "--daily", "lots"], "argument --daily: 'lots' is not a whole number"),
    (["jobs", "--limit", "0"], "argument --limit: must be 1 or more, not 0"),
    (["job", "resume", "-4"], "argument id: must be 1 or more, not -4"),
    (["job", "imagine", "--prompt", "x", "--count", "0"], "argument --count: must be from 1 to 4, not 0"),
    (["job", "imagine", "--prompt", "x", "--seed", "-1"], "argument --seed: must be 0 or more, not -1"),
    (["job", "edit", "--image", "in.png", "--prompt", "x", "--steps", "0"], "argument --steps: must be 1 or more"),
    (["job", "edit", "--image", "in.png", "--prompt", "x", "--guidance", "nan"], "argument --guidance: must be a"),
])
async def test_a_bad_number_is_one_usage_line_exit_2_and_changes_nothing(
        tmp_path: Path, args: list[str], message: str) -> None:
    env = clean_env()
    code, result, err = await atelier(*args, cwd=tmp_path, env=env)
    assert code == 2
    assert err.strip().count("\n") == 0 and message in err and "Traceback" not in err
    if args[0] == "job":
        assert result is not None and result["state"] == "failed" and message in result["error"]
    else:
        assert result is None
    proc = await asyncio.create_subprocess_exec(ATELIER, "quota", "bob", cwd=tmp_path, env=env,
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert "0 of 25 images used today" in out.decode() and "jobs in flight: 0 of 3" in out.decode()


async def quota_line(tmp_path: Path, env: dict[str, str], user: str) -> str:
    proc = await asyncio.create_subprocess_exec(ATELIER, "quota", user, cwd=tmp_path, env=env,
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    return out.decode()


async def test_a_job_that_returns_fewer_images_than_asked_charges_what_it_returned(
        tmp_path: Path, fal: FakeFal) -> None:
    from tests.fakes.pixazo import FakePixazo

    pixazo = FakePixazo(key="pixazo-cli-key")
    await pixazo.start()
    try:
        env = clean_env(FAL_KEY=fal.key, FAL_QUEUE_URL=fal.base_url, PIXAZO_API_KEY=pixazo.key,
                        PIXAZO_BASE_URL=pixazo.base_url)
        fal.script = JobScript(images=1)
        code, result, _ = await atelier("job", "imagine", "--prompt", "four foxes", "--count", "4", "--provider",
                                        "fal", "--user", "zoe", cwd=tmp_path, env=env)
        assert code == 0 and result is not None and len(result["files"]) == 1
        assert "zoe (cli): 1 of 25 images used today, 24 left" in await quota_line(tmp_path, env, "zoe")
        proc = await asyncio.create_subprocess_exec(ATELIER, "jobs", "--user", "zoe", "--json", cwd=tmp_path,
                                                    env=env, stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        assert json.loads(out.decode())["images_charged"] == 1
        pixazo.script = JobScript(images=1)
        code, result, _ = await atelier("job", "edit", "--image", str(SAMPLE), "--prompt", "autumn", "--count", "3",
                                        "--provider", "pixazo", "--user", "zoe", cwd=tmp_path, env=env)
        assert code == 0 and result is not None and len(result["files"]) == 1
        assert "zoe (cli): 2 of 25 images used today, 23 left" in await quota_line(tmp_path, env, "zoe")
    finally:
        await pixazo.stop()
