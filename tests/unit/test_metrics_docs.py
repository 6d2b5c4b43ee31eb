"""METRICS.md documents every metric the runtime registers; the Grafana dashboard asks only for those."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import engine.observability.exposition  # noqa: F401 (registers every metric)

REPO = Path(__file__).resolve().parents[2]
OURS = ("kwf_", "streams_")


def registered() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith(OURS):
            names.add(family.name + ("_total" if family.type == "counter" else ""))
    return names


def test_every_registered_metric_is_documented() -> None:
    documented = set(re.findall(r"`((?:kwf|streams)_[a-z_]+)`", (REPO / "METRICS.md").read_text()))
    missing = registered() - documented
    assert not missing, f"METRICS.md does not document {sorted(missing)}"


def test_the_dashboard_queries_only_metrics_that_exist() -> None:
    dashboard = json.loads((REPO / "grafana" / "kafka-workflows.json").read_text())
    known = registered()
    asked = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            asked |= set(re.findall(r"\b((?:kwf|streams)_[a-z_]+)", target["expr"]))
    histograms = {n + suffix for n in known for suffix in ("_bucket", "_sum", "_count")}
    unknown = asked - known - histograms
    assert asked and not unknown, f"the dashboard asks for unknown metrics {sorted(unknown)}"
