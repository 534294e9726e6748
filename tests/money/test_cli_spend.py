"""The install-wide spend cap through the real `atelier` command: priced by PRICES, capped by SPEND_DAILY_USD,
checked in the transaction that records the job, so that many processes at once never overshoot it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.fakes.pixazo import FakePixazo
from tests.test_cli import ATELIER, SAMPLE, atelier, clean_env


@pytest.fixture
async def pixazo() -> AsyncIterator[FakePixazo]:
    server = FakePixazo(key="pixazo-spend-key")
    await server.start()
    yield server
    await server.stop()


def capped_env(pixazo: FakePixazo, tmp_path: Path, **extra: str) -> dict[str, str]:
    settings = {"PIXAZO_API_KEY": pixazo.key, "PIXAZO_BASE_URL": pixazo.base_url,
                "DATABASE_URL": f"sqlite:///{tmp_path}/atelier.db", "PRICES": '{"pixazo.imagine": "0.05"}',
                "SPEND_DAILY_USD": "0.10"}
    return clean_env(**{**settings, **extra})


IMAGINE = ("job", "imagine", "--prompt", "a lighthouse", "--provider", "pixazo")


async def test_the_third_job_over_the_daily_cap_is_refused_before_anything_is_sent(
        tmp_path: Path, pixazo: FakePixazo) -> None:
    env = capped_env(pixazo, tmp_path)
    for _ in range(2):
        code, result, _ = await atelier(*IMAGINE, cwd=tmp_path, env=env)
        assert code == 0, result
        assert result is not None and result["state"] == "succeeded" and len(result["files"]) == 1
    code, result, _ = await atelier(*IMAGINE, cwd=tmp_path, env=env)
    assert code == 2
    assert result is not None and result["job_id"] is None
    assert "SPEND_DAILY_USD" in result["error"] and "$0.00 of $0.10 left" in result["error"]
    assert "resets at 00:00 UTC" in result["error"]
    assert len(pixazo.jobs) == 2  # the refused one never reached the provider
    today = datetime.now(UTC).date().isoformat()
    code, _, _ = await atelier("job", "filter", "--image", str(SAMPLE), "--name", "noir", "--provider", "local",
                               "--out", str(tmp_path / "o"), cwd=tmp_path, env=env)
    assert code == 0  # the cap is reached, but a free job still runs
    report = await run_text(tmp_path, env, "usage", "--since", today, "--csv")
    header, *lines = report.splitlines()
    assert header == "date,guild_id,user_id,operation,provider,jobs,images,usd"
    assert sorted(line.split(",", 3)[3] for line in lines) == ["filter,local,1,1,0", "imagine,pixazo,2,2,0.1"]
    assert all(line.startswith(f"{today},,") for line in lines)
    assert "$0.10 for 3 job(s)" in await run_text(tmp_path, env, "usage", "--since", today)
    assert await run_text(tmp_path, env, "usage", "--guild", "42", "--since", today, "--csv") == header + "\n"


async def test_doctor_marks_the_prices_no_source_backs(tmp_path: Path, pixazo: FakePixazo) -> None:
    lines = (await run_text(tmp_path, capped_env(pixazo, tmp_path), "doctor")).splitlines()
    assert any("pixazo.imagine" in ln and "$0.05/image" in ln and "PRICES" in ln for ln in lines)
    assert any("glam.tryon" in ln and "UNVERIFIED" in ln for ln in lines)
    assert any("fal.imagine" in ln and "$0.15/MP" in ln and "UNVERIFIED" not in ln for ln in lines)
    assert "spend   SPEND_DAILY_USD: $0.10 per UTC day" in lines


async def run_text(cwd: Path, env: dict[str, str], *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(ATELIER, *args, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return out.decode()


async def test_eight_processes_at_once_admit_exactly_two(tmp_path: Path, pixazo: FakePixazo) -> None:
    env = capped_env(pixazo, tmp_path)
    # The eight also race to create and migrate the file: the cap must hold through that as well.
    outcomes = await asyncio.gather(*(atelier(*IMAGINE, "--user", f"u{i}", "--out", str(tmp_path / f"o{i}"),
                                              cwd=tmp_path, env=env, timeout=120) for i in range(8)))
    codes = sorted(code for code, _, _ in outcomes)
    assert codes == [0, 0, 2, 2, 2, 2, 2, 2], [r for _, r, _ in outcomes]
    refused = [r for code, r, _ in outcomes if code == 2]
    assert all(r is not None and "SPEND_DAILY_USD" in r["error"] for r in refused)
    assert len(pixazo.jobs) == 2


async def test_zero_means_no_paid_job_but_local_filters_still_run(tmp_path: Path, pixazo: FakePixazo) -> None:
    env = capped_env(pixazo, tmp_path, SPEND_DAILY_USD="0")
    code, result, _ = await atelier(*IMAGINE, cwd=tmp_path, env=env)
    assert code == 2 and result is not None and "Paid jobs are off" in result["error"]
    code, result, _ = await atelier("job", "filter", "--image", str(SAMPLE), "--name", "noir", "--provider", "local",
                                    "--out", str(tmp_path / "o"), cwd=tmp_path, env=env)
    assert code == 0, result
    assert not pixazo.jobs


@pytest.mark.parametrize(("prices", "named"), [
    ('{"pixazo.imagine": "0.05", "pixazo.dream": "0.05"}', "pixazo.dream"),
    ('{"pixazo.imagine": "five cents"}', "pixazo.imagine"),
    ('{"fal.edit": 0.05}', "fal.edit"),
    ('{"pixazo.imagine": "0.05"', "not JSON"),
])
async def test_a_malformed_prices_stops_with_one_line_naming_the_entry(
        tmp_path: Path, pixazo: FakePixazo, prices: str, named: str) -> None:
    env = capped_env(pixazo, tmp_path, PRICES=prices)
    code, result, err = await atelier(*IMAGINE, cwd=tmp_path, env=env)
    assert code == 2
    assert result is not None and "PRICES" in result["error"] and named in result["error"]
    assert len(err.strip().splitlines()) == 1, err
    assert not pixazo.jobs


async def test_the_bot_does_not_start_with_a_malformed_prices(tmp_path: Path, pixazo: FakePixazo) -> None:
    env = capped_env(pixazo, tmp_path, PRICES='{"novita:seedream-5.0-lite.edit": "3 dollars"}',
                     DISCORD_TOKEN="not-used", DISCORD_API_BASE="http://127.0.0.1:9/api/v10")
    proc = await asyncio.create_subprocess_exec(ATELIER, "run", cwd=tmp_path, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2 and out == b""
    (line,) = err.decode().strip().splitlines()
    assert "PRICES" in line and "novita:seedream-5.0-lite.edit" in line
