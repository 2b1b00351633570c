"""docs/grafana-dashboard.json queries only metrics that exist (ignitia_sync.metrics.METRICS), and shows each one."""

from __future__ import annotations

import json
import pathlib
import re

from ignitia_sync.metrics import METRICS

DASHBOARD = pathlib.Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
NAME = re.compile(r"\bignitia_sync_[a-z_]+\b")


def queried_names() -> set[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return {name for panel in panels for target in panel["targets"] for name in NAME.findall(target["expr"])}


def test_every_metric_the_dashboard_queries_exists():
    unknown = set()
    for name in queried_names():
        family = re.sub(r"_(bucket|count|sum)$", "", name) if "_seconds_" in name else name
        if family not in METRICS:
            unknown.add(name)
    assert not unknown


def test_every_metric_is_on_the_dashboard():
    shown = {re.sub(r"_(bucket|count|sum)$", "", name) for name in queried_names()}
    assert set(METRICS) <= shown
