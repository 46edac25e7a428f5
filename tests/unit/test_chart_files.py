"""The chart's copies of the CRDs, the alerting rules and the dashboard, and its schema of the
operator's settings, are the ones their sources give (`make chart` writes them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from release import chart


def test_the_charts_derived_files_are_current() -> None:
    assert chart.stale() == []


def test_a_changed_source_makes_its_copy_stale(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rules = tmp_path / "prometheusrule.yaml"
    rules.write_text((chart.ROOT / "deploy/monitoring/prometheusrule.yaml").read_text() + "#\n")
    monkeypatch.setitem(chart.COPIED, "files/prometheusrule.yaml", str(rules))

    assert chart.stale() == ["files/prometheusrule.yaml"]


def test_the_settings_schema_has_every_setting_but_the_charts_own() -> None:
    names = set(chart.settings_schema()["properties"])

    assert "allowedHosts" in names
    assert not names & {"metricsPort", "livenessPort", "peeringName", "priority"}
