"""compose.yaml, checked without a Docker engine: every Atelier service runs a real `atelier` subcommand with
settings Atelier has, PostgreSQL keeps its data in a volume, every metrics port is published, and every image is
pinned the way hadolint wants the Dockerfile's (an explicit tag, never `latest`)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import yaml

from bot.cli import build_parser
from bot.settings import Settings
from tests.test_settings import example_names

ROOT = Path(__file__).resolve().parents[1]



def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def atelier_services() -> dict[str, dict[str, Any]]:
    """The services that run Atelier's own image (built from the repository's Dockerfile)."""
    return {name: s for name, s in compose()["services"].items() if "build" in s}


def subcommands() -> set[str]:
    actions = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return {name for action in actions for name in action.choices}


def test_the_scaled_set_up_is_there() -> None:
    services = compose()["services"]
    commands = sorted((s["command"][0], s["environment"].get("DISCORD_SHARD_IDS")) for s in atelier_services().values())
    assert commands == [("run", "0,1"), ("run", "2,3"), ("worker", None)]
    assert all(s["environment"].get("DISCORD_SHARD_COUNT") == "4" for s in services.values()
               if s.get("command") == ["run"])
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:")
    volume = postgres["volumes"][0].split(":")
    assert volume[1] == "/var/lib/postgresql/data" and volume[0] in compose()["volumes"]


def test_every_command_is_an_atelier_subcommand() -> None:
    known = subcommands()
    assert "run" in known
    for name, service in atelier_services().items():
        command = service["command"]
        assert isinstance(command, list) and command, name
        assert command[0] in known, f"{name}: `atelier {command[0]}` does not exist"


def test_every_environment_name_is_a_setting() -> None:
    settings = {name.upper() for name in Settings.model_fields}
    assert settings == set(example_names())  # what .env.example documents is what Settings reads
    for name, service in atelier_services().items():
        names = set(service["environment"])
        unknown = names - settings
        assert not unknown, f"{name}: not Atelier settings: {sorted(unknown)}"
        assert service["environment"]["DATABASE_URL"].startswith("postgresql://"), name



def test_the_bot_processes_split_the_shards_between_them() -> None:
    """Each bot service connects its own shards of one count, and together they connect every shard once."""
    bots = {name: s["environment"] for name, s in atelier_services().items() if s["command"][0] == "run"}
    assert len(bots) >= 2
    counts = {int(env["DISCORD_SHARD_COUNT"]) for env in bots.values()}
    assert len(counts) == 1
    served = [int(i) for env in bots.values() for i in str(env["DISCORD_SHARD_IDS"]).split(",")]
    assert sorted(served) == list(range(counts.pop()))
    for env in bots.values():  # the settings as each process reads them
        Settings(_env_file=None, **{k.lower(): v for k, v in env.items()})  # type: ignore[call-arg]


def test_every_process_publishes_its_metrics_port_and_checks_its_readiness() -> None:
    host_ports = []
    for name, service in atelier_services().items():
        port = service["environment"]["METRICS_PORT"]
        assert Settings(_env_file=None, metrics_port=port).metrics_port == int(port)  # type: ignore[call-arg]
        published = [p for p in service["ports"] if p.endswith(f":{port}")]
        assert published, f"{name}: metrics port {port} not published"
        host_ports += [p.split(":")[0] for p in published]
        assert f"127.0.0.1:{port}/readyz" in " ".join(service["healthcheck"]["test"]), name
        # The drain must end before Docker gives up waiting and sends SIGKILL.
        grace = float(service["environment"]["SHUTDOWN_GRACE_S"])
        assert _seconds(service["stop_grace_period"]) > grace, name
    assert len(host_ports) == len(set(host_ports)), "two processes publish the same host port"


def test_images_are_pinned() -> None:
    """hadolint's DL3006 and DL3007, for compose: an explicit tag (or digest) on every pulled image; Atelier's own
    is built from the Dockerfile that hadolint lints in CI."""
    for name, service in compose()["services"].items():
        if "build" in service:
            assert service["build"] == "." and (ROOT / "Dockerfile").exists(), name
            continue
        image = service["image"]
        match = re.fullmatch(r"[a-z0-9./_-]+(?::(?P<tag>[\w.-]+))?(?:@sha256:[0-9a-f]{64})?", image)
        assert match, f"{name}: {image!r} is not an image reference"
        assert match["tag"] or "@sha256:" in image, f"{name}: {image} has no explicit tag (DL3006)"
        assert match["tag"] != "latest", f"{name}: {image} uses latest (DL3007)"


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", value)
    assert match, value
    return float(match[1]) * (60 if match[2] == "m" else 1)
