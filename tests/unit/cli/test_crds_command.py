"""`egp-operator crds` prints the generated CRDs or writes them to a folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from egp_operator.cli import main
from egp_operator.resources.crds import render_crds_yaml


def test_crds_prints_the_generated_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crds"]) == 0

    assert capsys.readouterr().out == render_crds_yaml()


def test_crds_output_dir_writes_one_file_per_crd(tmp_path: Path) -> None:
    assert main(["crds", "--output-dir", str(tmp_path)]) == 0

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "egp-operator.io_egpmodels.yaml",
        "egp-operator.io_egpsources.yaml",
    ]
