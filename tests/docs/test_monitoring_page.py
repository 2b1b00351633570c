"""docs/monitoring.md lists every metric ignitia_sync.metrics exports, with its type, and no other."""

from __future__ import annotations

import pathlib
import re

from ignitia_sync.metrics import METRICS

PAGE = pathlib.Path(__file__).resolve().parents[2] / "docs" / "monitoring.md"


def test_the_table_lists_every_metric_with_its_type():
    rows = re.findall(r"^\| `(ignitia_sync_[a-z_]+)` \| (\w+) \|", PAGE.read_text(), re.MULTILINE)
    assert dict(rows) == METRICS
    assert len(rows) == len(METRICS)
