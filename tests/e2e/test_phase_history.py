"""How long, and how often, on the real API server: a model's phase changes upstream are
recorded in its status, in order, kept across an operator restart, shown by kubectl, and a
settled cycle still writes nothing."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from egp_testbench.cluster import LocalControlPlane
from egp_testbench.fake_egp import FakeEGPServer, generate_models
from tests.e2e.harness import Mirror, running_operator, start_source, sync_now, wait_mirrored


def test_phase_changes_are_recorded_in_order_and_kept_across_a_restart(
    control_plane: LocalControlPlane,
    peering: str,
    egp: FakeEGPServer,
    mirror: Mirror,
    kube_bin_dir: Path,
    tmp_path: Path,
) -> None:
    [model] = generate_models(1, seed=26)
    created = (datetime.now(UTC) - timedelta(minutes=10)).replace(microsecond=0)
    model |= {"status": "deploying", "created_at": created.isoformat().replace("+00:00", "Z")}
    egp.add_models([model])

    def status() -> dict[str, object]:
        return dict(mirror.by_model_id()[model["id"]]["status"])

    with running_operator(
        control_plane.kubeconfig, tmp_path / "first.log", status_heartbeat_seconds="3600"
    ):
        start_source(mirror, egp)
        wait_mirrored(mirror, 1)
        first = status()
        assert first["phaseSince"] == model["created_at"]  # first seen deploying: since creation
        assert first["history"] == []
        egp.update_model(model["id"], status="ready")
        sync_now(mirror)
        egp.update_model(model["id"], status="failed", status_reason="OOMKilled\nat step 3")
        sync_now(mirror)

    with running_operator(
        control_plane.kubeconfig, tmp_path / "second.log", status_heartbeat_seconds="3600"
    ):
        egp.update_model(model["id"], status="ready", status_reason=None)
        sync_now(mirror)
        after = status()
        versions = mirror.resource_versions()
        sync_now(mirror)  # settled: nothing to write
        assert mirror.resource_versions() == versions

    history = after["history"]
    assert isinstance(history, list)
    assert [(e["from"], e["to"]) for e in history] == [
        ("Deploying", "Ready"),
        ("Ready", "Failed"),
        ("Failed", "Ready"),
    ]
    times = [e["time"] for e in history]
    assert times == sorted(times)
    assert times[0] > model["created_at"]
    assert history[1]["message"] == "OOMKilled at step 3"
    assert after["phase"] == "Ready"
    assert after["phaseSince"] == times[-1]
    shown = subprocess.run(
        [
            str(kube_bin_dir / "kubectl"),
            "--kubeconfig",
            str(control_plane.kubeconfig),
            "get",
            "egpm",
            "-n",
            mirror.namespace,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert shown[0].split() == [
        "NAME",
        "MODEL",
        "VENDOR",
        "TYPE",
        "STATUS",
        "READY",
        "SINCE",
        "AGE",
    ]
    assert shown[1].split()[5] == "True"
