"""`make demo` works end to end and cleans up after itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from egp_testbench.cluster import stop_from_state


def test_the_demo_shows_the_mirror_and_a_failure_then_stops(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    command = [sys.executable, "-m", "egp_testbench.demo"]
    try:
        up = subprocess.run(
            [*command, "up", "--dir", str(demo)], capture_output=True, text=True, timeout=240
        )
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert "egpsource.egp-operator.io/demo   acct-demo   True    36" in up.stdout
        assert "Warning   Failed" in up.stdout
        assert "condition met" in up.stdout
        assert "make demo-down" in up.stdout
    finally:
        down = subprocess.run(
            [*command, "down", "--dir", str(demo)], capture_output=True, text=True, timeout=120
        )
    assert down.returncode == 0, down.stderr
    assert not stop_from_state(demo / "cluster"), "the control plane was still running"
    for name in ("operator", "fake-egp"):
        assert not (demo / f"{name}.pid").exists()
