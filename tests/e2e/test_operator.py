"""The operator, running as in production, keeps EGPModels equal to the EGP account."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from egp_operator.sync.model_status import PHASE_BY_STATUS
from egp_testbench.cluster import LocalControlPlane
from egp_testbench.fake_egp import FakeEGPServer, generate_models
from tests.e2e.harness import (
    ONE_CYCLE,
    Mirror,
    OperatorProcess,
    list_walks,
    phase,
    ready_condition,
    scrape,
    start_source,
    sync_now,
    wait_mirrored,
)
from tests.e2e.polling import eventually

pytestmark = pytest.mark.usefixtures("operator")


def test_a_new_source_mirrors_every_model_with_phase_columns_and_ready(
    egp: FakeEGPServer, mirror: Mirror, control_plane: LocalControlPlane, kube_bin_dir: Path
) -> None:
    upstream = generate_models(250, seed=42)
    egp.add_models(upstream)

    start_source(mirror, egp, pageSize=100)
    mirrored = wait_mirrored(mirror, 250)

    for model in upstream:
        status = mirrored[model["id"]]["status"]
        assert status["phase"] == PHASE_BY_STATUS[model["status"]]
        assert (status["name"], status["vendor"], status["type"], status["status"]) == (
            model["name"],
            model["model_vendor"],
            model["model_type"],
            model["status"],
        )
        ready = ready_condition(mirrored[model["id"]])
        assert ready["status"] == ("True" if model["status"] == "ready" else "False")
    source = eventually(
        lambda: mirror.source("src").get("status", {}).get("models"), what="source counts"
    )
    assert source["total"] == 250
    assert source["ready"] == sum(1 for m in upstream if m["status"] == "ready")
    a_ready = next(m for m in mirrored.values() if m["status"]["phase"] == "Ready")
    waited = subprocess.run(
        [
            str(kube_bin_dir / "kubectl"),
            "--kubeconfig",
            str(control_plane.kubeconfig),
            "wait",
            "-n",
            mirror.namespace,
            "--for=condition=Ready",
            f"egpmodel/{a_ready['metadata']['name']}",
            "--timeout=20s",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert waited.returncode == 0, waited.stderr
    assert "condition met" in waited.stdout


def test_upstream_status_changes_reach_the_cr_within_an_interval_with_one_event_each(
    egp: FakeEGPServer, mirror: Mirror
) -> None:
    deploying, ready = generate_models(2, seed=7)
    deploying["status"], ready["status"] = "deploying", "ready"
    egp.add_models([deploying, ready])
    start_source(mirror, egp)
    mirrored = wait_mirrored(mirror, 2)

    egp.update_model(deploying["id"], status="ready")
    egp.update_model(ready["id"], status="failed", status_reason="OOMKilled")

    eventually(lambda: phase(mirror, deploying["id"]) == "Ready", timeout=ONE_CYCLE, what="Ready")
    eventually(lambda: phase(mirror, ready["id"]) == "Failed", timeout=ONE_CYCLE, what="Failed")
    became_ready = mirror.events_for(mirrored[deploying["id"]]["metadata"]["name"])
    failed = mirror.events_for(mirrored[ready["id"]]["metadata"]["name"])
    assert [(e.type, e.reason) for e in became_ready] == [("Normal", "Ready")]
    assert [(e.type, e.reason) for e in failed] == [("Warning", "Failed")]
    assert "OOMKilled" in failed[0].message


def test_a_steady_state_cycle_writes_nothing(egp: FakeEGPServer, mirror: Mirror) -> None:
    egp.add_models(generate_models(60, seed=8))
    start_source(mirror, egp)
    wait_mirrored(mirror, 60)
    eventually(lambda: mirror.source("src").get("status", {}).get("models"), what="counts")
    walks = list_walks(egp)
    eventually(lambda: list_walks(egp) > walks, timeout=ONE_CYCLE, what="a settling cycle")

    versions = mirror.resource_versions()
    source_version = mirror.source("src")["metadata"]["resourceVersion"]
    events = len(mirror.core.list_namespaced_event(mirror.namespace).items)
    walks = list_walks(egp)
    eventually(lambda: list_walks(egp) >= walks + 2, timeout=2 * ONE_CYCLE, what="two cycles")

    assert mirror.resource_versions() == versions
    assert mirror.source("src")["metadata"]["resourceVersion"] == source_version
    assert len(mirror.core.list_namespaced_event(mirror.namespace).items) == events


def test_a_deleted_model_is_marked_missing_under_retain(egp: FakeEGPServer, mirror: Mirror) -> None:
    kept, gone = generate_models(2, seed=9)
    egp.add_models([kept, gone])
    start_source(mirror, egp)
    wait_mirrored(mirror, 2)

    egp.delete_model(gone["id"])
    sync_now(mirror)

    model = mirror.by_model_id()[gone["id"]]
    assert model["status"]["name"] == gone["name"]
    assert ready_condition(model)["reason"] == "Missing"
    assert phase(mirror, kept["id"]) == PHASE_BY_STATUS[kept["status"]]


def test_under_delete_a_missing_model_is_removed_after_its_grace_period(
    egp: FakeEGPServer, mirror: Mirror
) -> None:
    kept, gone = generate_models(2, seed=10)
    egp.add_models([kept, gone])
    start_source(mirror, egp, deletionPolicy="Delete", missingGracePeriod="15s")
    wait_mirrored(mirror, 2)

    egp.delete_model(gone["id"])

    eventually(lambda: phase(mirror, gone["id"]) == "Missing", timeout=ONE_CYCLE, what="Missing")
    eventually(
        lambda: gone["id"] not in mirror.by_model_id(),
        timeout=2 * ONE_CYCLE,
        what="deletion after the grace period",
    )
    assert kept["id"] in mirror.by_model_id()


def test_edited_or_deleted_models_are_restored_by_the_next_cycle(
    egp: FakeEGPServer, mirror: Mirror
) -> None:
    first, second = generate_models(2, seed=12)
    first["status"] = second["status"] = "ready"
    egp.add_models([first, second])
    start_source(mirror, egp)
    mirrored = wait_mirrored(mirror, 2)
    edited = mirrored[first["id"]]["metadata"]["name"]
    deleted = mirrored[second["id"]]["metadata"]["name"]

    mirror.custom.patch_namespaced_custom_object_status(
        "egp-operator.io",
        "v1alpha1",
        mirror.namespace,
        "egpmodels",
        edited,
        {"status": {"phase": "Failed", "status": "failed"}},
    )
    mirror.custom.delete_namespaced_custom_object(
        "egp-operator.io", "v1alpha1", mirror.namespace, "egpmodels", deleted
    )

    # A cycle sees the edits once the watch has brought them to the operator's index.
    eventually(
        lambda: (
            sync_now(mirror)
            and phase(mirror, first["id"]) == "Ready"
            and phase(mirror, second["id"]) == "Ready"
        ),
        timeout=2 * ONE_CYCLE,
        interval=0,
        what="the edited model restored and the deleted one recreated",
    )
    assert mirror.by_model_id()[second["id"]]["metadata"]["name"] == deleted


def test_deleting_the_source_garbage_collects_its_models(
    egp: FakeEGPServer, mirror: Mirror
) -> None:
    egp.add_models(generate_models(5, seed=13))
    start_source(mirror, egp)
    wait_mirrored(mirror, 5)

    mirror.custom.delete_namespaced_custom_object(
        "egp-operator.io", "v1alpha1", mirror.namespace, "egpsources", "src"
    )

    eventually(lambda: not mirror.models(), timeout=60, what="garbage collection")


def test_a_suspended_source_does_not_call_egp(egp: FakeEGPServer, mirror: Mirror) -> None:
    egp.add_models(generate_models(3, seed=14))
    start_source(mirror, egp, suspend=True)

    synced = eventually(
        lambda: (c := mirror.source_condition("src", "Synced")).get("reason") == "Suspended" and c,
        timeout=ONE_CYCLE,
        what="Synced=False reason Suspended",
    )
    egp.reset_request_log()
    mirror.patch_source_spec("src", refreshInterval="11s")
    eventually(
        lambda: mirror.source("src")["status"].get("observedGeneration") == 2,
        timeout=ONE_CYCLE,
        what="a suspended cycle to see the edit",
    )

    assert synced["status"] == "False"
    assert egp.request_counts() == {}
    assert mirror.models() == []

    mirror.patch_source_spec("src", suspend=False)
    wait_mirrored(mirror, 3)


#: Far below any interval used here (an hour): a change seen within it came from a wake-up.
PROMPTLY = 15


def observed_generation(mirror: Mirror) -> int | None:
    generation: int | None = mirror.source("src").get("status", {}).get("observedGeneration")
    return generation


def test_a_shorter_refresh_interval_takes_effect_at_once(
    egp: FakeEGPServer, mirror: Mirror
) -> None:
    upstream = generate_models(3, seed=15)
    egp.add_models(upstream)
    start_source(mirror, egp, refreshInterval="1h")
    wait_mirrored(mirror, 3)
    eventually(lambda: observed_generation(mirror) == 1, what="the first status")
    egp.update_model(upstream[0]["id"], status="failed")

    mirror.patch_source_spec("src", refreshInterval="10s")

    eventually(
        lambda: observed_generation(mirror) == 2,
        timeout=PROMPTLY,
        what="observedGeneration to follow the edit",
    )
    eventually(
        lambda: phase(mirror, upstream[0]["id"]) == "Failed",
        timeout=PROMPTLY,
        what="a cycle right after the edit, not an hour later",
    )


def test_unsuspending_a_source_syncs_it_at_once(egp: FakeEGPServer, mirror: Mirror) -> None:
    egp.add_models(generate_models(3, seed=16))
    start_source(mirror, egp, suspend=True, refreshInterval="1h")
    eventually(
        lambda: mirror.source_condition("src", "Synced").get("reason") == "Suspended",
        timeout=ONE_CYCLE,
        what="Synced=False reason Suspended",
    )

    mirror.patch_source_spec("src", suspend=False)

    eventually(
        lambda: len(mirror.models()) == 3,
        timeout=PROMPTLY,
        what="the mirror right after unsuspending, not an hour later",
    )


def test_the_sync_request_annotation_syncs_now_and_is_echoed_to_status(
    egp: FakeEGPServer, mirror: Mirror
) -> None:
    upstream = generate_models(3, seed=17)
    egp.add_models(upstream)
    start_source(mirror, egp, refreshInterval="1h")
    wait_mirrored(mirror, 3)
    egp.update_model(upstream[1]["id"], status="deployment_timeout")

    mirror.request_sync("src", "2026-11-29T12:00:00Z")

    eventually(
        lambda: (
            mirror.source("src").get("status", {}).get("lastHandledSyncRequest")
            == "2026-11-29T12:00:00Z"
        ),
        timeout=PROMPTLY,
        what="the request to be handled",
    )
    assert phase(mirror, upstream[1]["id"]) == "DeploymentTimeout"
    assert observed_generation(mirror) == 1  # an annotation is not a spec change


def peers(mirror: Mirror) -> dict[str, Any]:
    peering = mirror.custom.get_cluster_custom_object(
        "kopf.dev", "v1", "clusterkopfpeerings", "egp-operator"
    )
    found: dict[str, Any] = peering.get("status") or {}
    return found


def test_two_replicas_run_and_exactly_one_syncs(
    egp: FakeEGPServer,
    mirror: Mirror,
    operator: OperatorProcess,
    control_plane: LocalControlPlane,
    tmp_path: Path,
) -> None:
    egp.add_models(generate_models(4, seed=15))
    start_source(mirror, egp)
    wait_mirrored(mirror, 4)
    known = set(peers(mirror))
    second = OperatorProcess(
        control_plane.kubeconfig, tmp_path / "second.log", status_heartbeat_seconds="3600"
    )
    try:
        eventually(lambda: set(peers(mirror)) - known, timeout=60, what="the second replica")
        marker = f"cycle of EGPSource {mirror.namespace}/src"
        before = {r: r.log().count(marker) for r in (operator, second)}
        sync_now(mirror)
        sync_now(mirror)

        grew = {r: r.log().count(marker) - before[r] for r in (operator, second)}
        assert sorted(grew.values())[0] == 0, "both replicas synced"
        assert sorted(grew.values())[1] >= 2
        assert operator.alive()
        assert second.alive()
    finally:
        second.stop()
    sync_now(mirror, timeout=3 * ONE_CYCLE)  # the remaining replica syncs after its peer left


def test_metrics_show_models_by_phase_and_vendor_and_egp_requests(
    egp: FakeEGPServer, mirror: Mirror, operator: OperatorProcess
) -> None:
    upstream = generate_models(40, seed=16)
    egp.add_models(upstream)
    start_source(mirror, egp, pageSize=15)
    wait_mirrored(mirror, 40)
    source = {("namespace", mirror.namespace), ("source", "src")}

    def models_gauge() -> dict[tuple[str, str], float] | None:
        found = {
            (dict(labels)["phase"], dict(labels)["vendor"]): value
            for (name, labels), value in scrape(operator).items()
            if name == "egp_operator_models" and source <= labels
        }
        return found or None

    gauge = eventually(models_gauge, timeout=ONE_CYCLE, what="the models gauge")
    expected = Counter((PHASE_BY_STATUS[m["status"]], m["model_vendor"]) for m in upstream)
    assert gauge == {key: float(n) for key, n in expected.items()}
    samples = scrape(operator)
    ok_requests = samples["egp_operator_egp_requests_total", frozenset(source | {("code", "200")})]
    assert ok_requests >= 3  # 40 models in pages of 15
    assert samples["egp_operator_last_successful_sync_timestamp_seconds", frozenset(source)] > 0
    # start_source's refreshInterval, for the alerts to judge the source by.
    assert samples["egp_operator_source_refresh_interval_seconds", frozenset(source)] == 10
    writes = sum(
        value
        for (name, labels), value in samples.items()
        if name == "egp_operator_kubernetes_requests_total" and dict(labels)["verb"] == "POST"
    )
    assert writes >= 40


def run_cli(control_plane: LocalControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "egp_operator.cli", *args],
        env={**os.environ, "KUBECONFIG": str(control_plane.kubeconfig)},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_sync_once_dry_run_prints_the_plan_and_writes_nothing_then_a_real_run_mirrors(
    egp: FakeEGPServer, mirror: Mirror, control_plane: LocalControlPlane
) -> None:
    upstream = generate_models(6, seed=17)
    egp.add_models(upstream)
    start_source(mirror, egp, suspend=True)  # the running operator leaves it alone

    dry = run_cli(control_plane, "sync", "src", "--once", "--dry-run", "-n", mirror.namespace)

    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[0].split() == ["ACTION", "OBJECT", "MODEL", "ID", "DETAIL"]
    assert sum(line.startswith("create ") for line in dry.stdout.splitlines()) == 6
    assert "6 create(s), 0 update(s), 0 delete(s) would be written (dry run)" in dry.stdout
    assert mirror.models() == []

    real = run_cli(control_plane, "sync", "src", "--once", "-n", mirror.namespace)

    assert real.returncode == 0, real.stderr
    assert set(mirror.by_model_id()) == {m["id"] for m in upstream}
    again = run_cli(control_plane, "sync", "src", "--once", "-n", mirror.namespace)
    assert "nothing to write: the mirror is up to date" in again.stdout
