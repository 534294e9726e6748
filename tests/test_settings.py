"""Settings: every line of .env.example is a setting and every setting has its line; the areas compose into one
flat Settings without one area's validator silently replacing another's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.config.area import Area
from bot.settings import Settings

ENV_EXAMPLE = Path(__file__).resolve().parents[1] / ".env.example"


def example_names() -> list[str]:
    return [m[1] for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
            if (m := re.match(r"^([A-Z][A-Z0-9_]*)=", line))]


def test_env_example_names_every_setting_once_and_nothing_else() -> None:
    names = example_names()
    assert len(names) == len(set(names)), "a setting appears twice in .env.example"
    assert {n.lower() for n in names} == set(Settings.model_fields)


def test_env_example_values_are_the_defaults_or_empty() -> None:
    # Copying .env.example to .env unchanged must give the same settings as no .env at all.
    assert Settings(_env_file=ENV_EXAMPLE) == Settings(_env_file=None)  # type: ignore[call-arg]


def test_every_area_validator_survives_the_composition() -> None:
    areas = [base for base in Settings.__mro__ if issubclass(base, Area) and base not in (Settings, Area)]
    names = [name for area in areas for name in vars(area).get("__pydantic_decorators__").field_validators]
    assert len(names) == len(set(names)), "two areas name a validator alike: one would replace the other"
    assert set(names) == set(Settings.__pydantic_decorators__.field_validators)


@pytest.mark.parametrize(("name", "value", "attribute", "expected"), [
    ("GLAM_BASE_URL", "https://glam.example/", "glam_base_url", "https://glam.example"),
    ("FAL_JWKS_URL", "https://keys.example/jwks/", "fal_jwks_url", "https://keys.example/jwks"),
    ("WEBHOOK_PUBLIC_URL", " https://bot.example/ ", "webhook_public_url", "https://bot.example"),
    ("FAL_KEY", "  ", "fal_key", None),
    ("DISCORD_TOKEN", "", "discord_token", None),
    ("DISCORD_GUILD_IDS", "1, 2", "guild_ids", [1, 2]),
    ("DISCORD_SHARD_COUNT", "", "discord_shard_count", None),
    ("JOB_DEADLINES", '{"filter": 120}', "job_deadlines", {"filter": 120.0}),
])
def test_each_area_reads_its_environment_names(monkeypatch: pytest.MonkeyPatch, name: str, value: str,
                                               attribute: str, expected: object) -> None:
    monkeypatch.setenv(name, value)
    assert getattr(Settings(_env_file=None), attribute) == expected  # type: ignore[call-arg]


@pytest.mark.parametrize(("name", "value"), [
    ("NOVITA_BASE_URL", "ftp://novita.example"),
    ("FAL_JWKS_URL", "keys.example"),
    ("DISCORD_GUILD_IDS", "1,abc"),
    ("JOB_DEADLINES", '{"paint": 10}'),
    ("QUOTA_CONCURRENT", "0"),
    ("DISCORD_SHARD_COUNT", "0"),
    ("DISCORD_SHARD_IDS", "0,one"),
    ("DISCORD_SHARDS_PER_PROCESS", "0"),
])
def test_each_area_refuses_bad_values(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.lower()):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_shard_settings_name_this_processs_shards_or_leave_them_to_claim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_SHARD_COUNT", "4")
    assert Settings(_env_file=None).shard_ids is None  # type: ignore[call-arg]
    monkeypatch.setenv("DISCORD_SHARD_IDS", "3, 2,3")
    assert Settings(_env_file=None).shard_ids == [2, 3]  # type: ignore[call-arg]


@pytest.mark.parametrize(("env", "message"), [
    ({"DISCORD_SHARD_IDS": "0,1"}, "DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT"),
    ({"DISCORD_SHARD_COUNT": "4", "DISCORD_SHARD_IDS": "2,4"}, r"DISCORD_SHARD_IDS \[4\] are not below"),
])
def test_shard_ids_must_fit_the_count(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        Settings(_env_file=None)  # type: ignore[call-arg]
