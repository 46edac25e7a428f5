"""Faults and hostile input, the way Kubernetes' own controllers are tested: inject the fault,
then assert the invariants. Nothing mirrored is wrongly deleted or marked Missing, no object is
duplicated, the source's conditions say what happened, the operator stays up, and the first
good cycle converges to upstream truth. The last test scans everything the suite produced for
the API key."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from egp_operator.sync.naming import object_name
from egp_operator.sync.upstream import mask_env_vars
from egp_testbench.cluster import LocalControlPlane
from egp_testbench.fake_egp import FakeEGPServer, Fault, generate_models
from tests.e2e.harness import (
    EGP_ACCOUNT,
    EGP_KEY,
    ONE_CYCLE,
    Mirror,
    OperatorProcess,
    metrics_text,
    phase,
    ready_condition,
    scrape,
    start_source,
    sync_now,
    wait_mirrored,
)
from tests.e2e.polling import eventually

pytestmark = pytest.mark.usefixtures("operator")

ROTATED_KEY = "sk-e2e-rotated-44d1a0c2"


def synced_reason(mirror: Mirror, reason: str, timeout: float = 2 * ONE_CYCLE) -> dict[str, Any]:
    return eventually(
        lambda: (c := mirror.source_condition("src", "Synced")).get("reason") == reason and c,
        timeout=timeout,
        what=f"Synced with reason {reason}",
    )


def assert_nothing_lost(mirror: Mirror, model_ids: set[str]) -> None:
    models = mirror.models()
    by_id = {m["spec"]["modelID"] for m in models}
    assert by_id == model_ids
    assert len(models) == len(model_ids), "duplicate objects"
    assert all(m["status"]["phase"] != "Missing" for m in models)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault(status=503), "ServerError"),
        (Fault(status=429, headers={"Retry-After": "1"}), "RateLimited"),
        (Fault(page=2, status=500), "IncompleteListing"),
        (Fault(delay=8.0), "TransportError"),
        (Fault(disconnect=True), "TransportError"),
        (Fault(status=200, body='{"object": "list", "items": [{"id": '), "MalformedResponse"),
        (Fault(mutation="wrong_shape"), "MalformedResponse"),
        (Fault(page=2, mutation="empty_page_has_more"), "IncompleteListing"),
        (Fault(page=2, mutation="repeat_previous_id"), "IncompleteListing"),
        (None, "AuthenticationFailed"),  # the key is revoked, then restored
        ("other-account", "PermissionDenied"),  # the key loses the account, then gets it back
    ],
    ids=[
        "5xx",
        "429",
        "failure-on-page-2",
        "timeout",
        "connection-drop",
        "malformed-json",
        "wrong-shape",
        "empty-page-has-more",
        "repeated-id",
        "401",
        "403",
    ],
)
def test_an_egp_fault_deletes_and_marks_nothing_and_the_next_good_cycle_converges(
    egp: FakeEGPServer, mirror: Mirror, operator: OperatorProcess, fault: Any, reason: str
) -> None:
    upstream = generate_models(30, seed=11)
    egp.add_models(upstream)
    start_source(mirror, egp, pageSize=10, deletionPolicy="Delete", missingGracePeriod="10s")
    wait_mirrored(mirror, 30)

    if isinstance(fault, Fault):
        egp.inject(fault)
    else:
        egp.revoke_key(EGP_KEY)
        if fault == "other-account":
            egp.add_key(EGP_KEY, "acct-someone-else")
    egp.delete_model(upstream[0]["id"])  # hidden behind the fault: nothing may act on it
    sync_now(mirror)
    synced = mirror.source_condition("src", "Synced")

    assert synced["reason"] == reason
    assert synced["status"] == "False"
    assert mirror.source("src")["status"]["message"]
    assert_nothing_lost(mirror, {m["id"] for m in upstream})
    assert operator.alive()
    assert EGP_KEY not in metrics_text(operator)
    errors = scrape(operator)[
        "egp_operator_sync_errors_total",
        frozenset({("namespace", mirror.namespace), ("source", "src"), ("reason", reason)}),
    ]
    assert errors >= 1

    egp.clear_faults()
    egp.revoke_key(EGP_KEY)
    egp.add_key(EGP_KEY, EGP_ACCOUNT)
    sync_now(mirror)

    assert phase(mirror, upstream[0]["id"]) in ("Missing", None)
    assert mirror.source_condition("src", "Synced")["reason"] == "Synced"


def test_unknown_status_values_and_extra_fields_are_mirrored_not_rejected(
    egp: FakeEGPServer, mirror: Mirror
) -> None:
    [odd, plain] = generate_models(2, seed=21)
    odd |= {"status": "paused", "model_vendor": "mistral_cloud", "region": "eu-west-1"}
    egp.add_models([odd, plain])
    egp.configure(extra_fields=True)

    start_source(mirror, egp)
    mirrored = wait_mirrored(mirror, 2)

    status = mirrored[odd["id"]]["status"]
    assert status["phase"] == "Unknown"
    assert (status["status"], status["vendor"]) == ("paused", "mistral_cloud")
    assert status["extraFields"]["region"] == "eu-west-1"
    assert ready_condition(mirrored[odd["id"]])["reason"] == "Unknown"
    synced_reason(mirror, "Synced")


def test_a_model_with_a_3mb_vendor_configuration_is_mirrored_truncated(
    egp: FakeEGPServer, mirror: Mirror
) -> None:
    [huge, plain] = generate_models(2, seed=22)
    huge["vendor_configuration"] = {"model": "x", "blob": "a" * 3_000_000}
    egp.add_models([huge, plain])

    start_source(mirror, egp)
    mirrored = wait_mirrored(mirror, 2)

    status = mirrored[huge["id"]]["status"]
    assert status["truncatedFields"] == ["vendorConfiguration"]
    truncated = next(c for c in status["conditions"] if c["type"] == "Truncated")
    assert truncated["reason"] == "StatusTooLarge"
    plain_configuration = mask_env_vars(plain["vendor_configuration"])
    assert mirrored[plain["id"]]["status"]["vendorConfiguration"] == plain_configuration
    synced_reason(mirror, "Synced")


def test_hostile_names_are_mirrored_under_safe_object_names(
    egp: FakeEGPServer, mirror: Mirror
) -> None:
    hostile = ["Ünïcödé ✨ модель", "x" * 300, "../../etc/passwd", "a/b=c,d;e", "-_-", "--"]
    models = generate_models(len(hostile), seed=23)
    for model, name in zip(models, hostile, strict=True):
        model["name"] = name
    models[0]["model_vendor"] = "vendor with spaces/and=signs"
    egp.add_models(models)

    start_source(mirror, egp)
    mirrored = wait_mirrored(mirror, len(hostile))

    assert sorted(m["status"]["name"] for m in mirrored.values()) == sorted(hostile)
    assert all(len(m["metadata"]["name"]) <= 63 for m in mirrored.values())


def test_a_rotated_secret_is_used_without_a_restart(egp: FakeEGPServer, mirror: Mirror) -> None:
    egp.add_models(generate_models(3, seed=24))
    start_source(mirror, egp)
    wait_mirrored(mirror, 3)

    egp.add_key(ROTATED_KEY, EGP_ACCOUNT)
    egp.revoke_key(EGP_KEY)
    sync_now(mirror)
    assert mirror.source_condition("src", "Synced")["reason"] == "AuthenticationFailed"
    mirror.core.patch_namespaced_secret(
        "src-credentials", mirror.namespace, {"stringData": {"apiKey": ROTATED_KEY}}
    )

    synced_reason(mirror, "Synced")
    assert len(mirror.models()) == 3


def test_a_deleted_secret_is_reported_and_loses_nothing(egp: FakeEGPServer, mirror: Mirror) -> None:
    upstream = generate_models(3, seed=25)
    egp.add_models(upstream)
    start_source(mirror, egp, deletionPolicy="Delete", missingGracePeriod="10s")
    wait_mirrored(mirror, 3)

    mirror.core.delete_namespaced_secret("src-credentials", mirror.namespace)
    sync_now(mirror)
    ready = mirror.source_condition("src", "Ready")

    assert (ready["status"], ready["reason"]) == ("False", "SecretNotFound")
    assert_nothing_lost(mirror, {m["id"] for m in upstream})


def test_an_object_already_holding_the_name_is_converged_not_duplicated(
    egp: FakeEGPServer, mirror: Mirror
) -> None:
    """A concurrent writer of the source (another replica, a restart mid-cycle) created the
    object first, owned by the source: the operator's create gets 409 and writes its status."""
    [model] = generate_models(1, seed=26)
    egp.add_models([model])
    start_source(mirror, egp, suspend=True)
    source = mirror.source("src")
    name = object_name(mirror.namespace, "src", model["id"], model["name"])
    owner = {
        "apiVersion": "egp-operator.io/v1alpha1",
        "kind": "EGPSource",
        "name": "src",
        "uid": source["metadata"]["uid"],
        "controller": True,
    }
    mirror.custom.create_namespaced_custom_object(
        "egp-operator.io",
        "v1alpha1",
        mirror.namespace,
        "egpmodels",
        {
            "apiVersion": "egp-operator.io/v1alpha1",
            "kind": "EGPModel",
            "metadata": {"name": name, "ownerReferences": [owner]},
            "spec": {"sourceRef": {"name": "src"}, "modelID": model["id"]},
        },
    )

    mirror.patch_source_spec("src", suspend=False)
    mirrored = wait_mirrored(mirror, 1)

    assert mirrored[model["id"]]["metadata"]["name"] == name
    assert mirrored[model["id"]]["status"]["name"] == model["name"]


@pytest.mark.parametrize(
    ("process", "sig"),
    [
        ("kube-apiserver", signal.SIGTERM),
        ("kube-apiserver", signal.SIGKILL),
        ("etcd", signal.SIGKILL),
    ],
    ids=["apiserver-restart", "apiserver-crash", "etcd-crash"],
)
def test_the_control_plane_restarting_mid_cycle_loses_nothing_and_converges(
    egp: FakeEGPServer,
    mirror: Mirror,
    operator: OperatorProcess,
    control_plane: LocalControlPlane,
    process: str,
    sig: int,
) -> None:
    upstream = generate_models(300, seed=28)
    egp.add_models(upstream)
    start_source(mirror, egp, pageSize=50)
    eventually(lambda: len(mirror.models()) >= 10, timeout=60, what="the first writes")

    control_plane.restart(process, sig=sig)

    wait_mirrored(mirror, 300)
    assert_nothing_lost(mirror, {m["id"] for m in upstream})
    egp.update_model(upstream[0]["id"], status="failed")
    sync_now(mirror)

    assert phase(mirror, upstream[0]["id"]) == "Failed"
    assert operator.alive()


def test_when_the_working_replica_dies_the_other_takes_over_within_the_peering_lifetime(
    egp: FakeEGPServer,
    mirror: Mirror,
    operator: OperatorProcess,
    control_plane: LocalControlPlane,
    tmp_path: Path,
) -> None:
    [model] = generate_models(1, seed=29)
    model["status"] = "ready"
    egp.add_models([model])
    # Above any random priority, so this replica works and the module's replica pauses.
    leader = OperatorProcess(
        control_plane.kubeconfig,
        tmp_path / "leader.log",
        status_heartbeat_seconds="3600",
        priority=str(2**31),
    )
    try:
        start_source(mirror, egp)
        wait_mirrored(mirror, 1)
        eventually(lambda: "cycle of EGPSource" in leader.log(), what="the leader to sync")
        leader.stop(signal.SIGKILL)
        egp.update_model(model["id"], status="failed")

        # kopf's peering lifetime (60 s) bounds how long a dead peer blocks the others.
        eventually(
            lambda: phase(mirror, model["id"]) == "Failed",
            timeout=60 + 2 * ONE_CYCLE,
            what="the paused replica to take over",
        )
    finally:
        leader.stop()


def test_the_operator_killed_mid_cycle_restarts_and_converges_without_duplicates(
    egp: FakeEGPServer,
    mirror: Mirror,
    operator: OperatorProcess,
    control_plane: LocalControlPlane,
    tmp_path: Path,
) -> None:
    upstream = generate_models(400, seed=27)
    egp.add_models(upstream)
    start_source(mirror, egp, pageSize=50)
    eventually(lambda: len(mirror.models()) >= 20, timeout=60, what="the first writes")

    operator.stop(signal.SIGKILL)
    replacement = OperatorProcess(
        control_plane.kubeconfig, tmp_path / "replacement.log", status_heartbeat_seconds="3600"
    )
    try:
        mirrored = wait_mirrored(mirror, 400)
        assert_nothing_lost(mirror, {m["id"] for m in upstream})
        assert len(mirrored) == 400
        # The killed replica's peering entry outlives it; the takeover waits at most for its
        # lifetime (60 s) plus a cycle, which wait_mirrored's deadline covers.
        synced_reason(mirror, "Synced", timeout=120)
    finally:
        replacement.stop()


def test_the_api_key_appears_nowhere_in_logs_events_resources_or_metrics(
    control_plane: LocalControlPlane, tmp_path_factory: pytest.TempPathFactory, api: Any
) -> None:
    """Runs last in this module: scans what every test above left behind."""
    from kubernetes import client

    custom = client.CustomObjectsApi(api)
    texts = [
        json.dumps(custom.list_cluster_custom_object("egp-operator.io", "v1alpha1", kind))
        for kind in ("egpmodels", "egpsources")
    ]
    texts.append(str(client.CoreV1Api(api).list_event_for_all_namespaces().to_dict()))
    base = tmp_path_factory.getbasetemp()
    logs = [
        p.read_text(errors="replace") for p in base.rglob("*.log") if "cluster" not in p.parts[-3:]
    ]
    texts += logs
    assert logs, "no operator log was found to scan"

    for secret in (EGP_KEY, ROTATED_KEY):
        assert all(secret not in text for text in texts)
