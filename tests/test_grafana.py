"""The Grafana dashboard (deploy/grafana/atelier.json) parses, has the panels an operator looks at first, and
queries only metrics the process exports (a renamed metric would leave a panel silently empty)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from bot.ops.metrics import exported_names

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "atelier.json"
FIRST_LOOKS = ("Jobs in flight", "Results per minute", "Provider errors per second", "Discord 429s per second",
               "Event-loop lag (p99)")
# A metric name in PromQL: an identifier that is not a function, a keyword or a label (labels follow `by (`).
METRIC = re.compile(r"\b((?:atelier|process)_[a-z0-9_]+)\b")


def panels() -> list[dict[str, Any]]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data["panels"], list)
    return data["panels"]  # type: ignore[no-any-return]


def test_the_first_looks_are_there_each_with_a_query() -> None:
    titles = [p["title"] for p in panels()]
    assert set(FIRST_LOOKS) <= set(titles)
    assert len(titles) == len(set(titles))
    assert all(p["targets"] and all(t["expr"].strip() for t in p["targets"]) for p in panels())


def test_every_queried_metric_is_exported() -> None:
    exported = exported_names()
    queried = {name for p in panels() for t in p["targets"] for name in METRIC.findall(t["expr"])}
    assert queried, "no metric found in the dashboard's queries"
    assert queried <= exported, f"not exported: {sorted(queried - exported)}"
