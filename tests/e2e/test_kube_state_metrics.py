"""kube-state-metrics (tools/kube-state-metrics: upstream's own command, built from the Go module
proxy) running the shipped CustomResourceState config against the local control plane, logged
in as a ServiceAccount granted nothing but the shipped ClusterRole: it exports the series the
config's header documents, with the documented labels and the right values, for models of every
phase and for their source."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client

from egp_operator.resources.models import GROUP, VERSION
from egp_testbench.cluster import LocalControlPlane
from egp_testbench.fake_egp import FakeEGPServer, generate_models
from egp_testbench.processes import free_port, stop_group
from tests.e2e.harness import Mirror, samples, start_source, sync_now, wait_mirrored
from tests.e2e.polling import eventually

pytestmark = pytest.mark.usefixtures("operator")

MONITORING = Path(__file__).parents[2] / "deploy" / "monitoring"
CONFIG = MONITORING / "kube-state-metrics-config.yaml"
RBAC = MONITORING / "kube-state-metrics-rbac.yaml"
SERVICE_ACCOUNT = "kube-state-metrics"

PHASES = ("Ready", "Deploying", "Failed", "DeploymentTimeout", "Unknown", "Missing")
# Upstream status -> the phase the operator gives it; "paused" is a status it does not know,
# "gone" is deleted upstream once mirrored (the source's deletionPolicy is Retain).
STATUSES = {
    "ready": "Ready",
    "deploying": "Deploying",
    "failed": "Failed",
    "deployment_timeout": "DeploymentTimeout",
    "paused": "Unknown",
    "gone": "Missing",
}

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def documented() -> dict[str, set[str]]:
    """Each series the config's header comment lists, with its labels, and the three every
    custom-resource series also has, as the header says."""
    header = CONFIG.read_text().split("\nkind:", 1)[0]
    listed = re.findall(r"^#\s+(kube_\w+)\{([\w,]+)\}", header, flags=re.MULTILINE)
    extra = {"customresource_group", "customresource_kind", "customresource_version"}
    return {name: {*labels.split(","), *extra} for name, labels in listed}


def unix_time(rfc3339: str) -> float:
    """An RFC 3339 time (`...Z`, as Kubernetes and EGP write them) as Unix time."""
    parsed = datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None, rfc3339
    return parsed.timestamp()


@pytest.fixture
def token_kubeconfig(
    control_plane: LocalControlPlane, api: Any, namespace: str, tmp_path: Path
) -> Iterator[Path]:
    """A kubeconfig of a ServiceAccount bound to the shipped ClusterRole and nothing else, as
    the RBAC file's comment says to bind it."""
    rbac = client.RbacAuthorizationV1Api(api)
    core = client.CoreV1Api(api)
    role = yaml.safe_load(RBAC.read_text())
    rbac.patch_cluster_role(
        role["metadata"]["name"],
        role,
        field_manager="egp-e2e",
        force=True,
        _content_type="application/apply-patch+yaml",
    )
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=SERVICE_ACCOUNT))
    )
    binding = f"{role['metadata']['name']}-{namespace}"
    rbac.create_cluster_role_binding(
        client.V1ClusterRoleBinding(
            metadata=client.V1ObjectMeta(name=binding),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io",
                kind="ClusterRole",
                name=role["metadata"]["name"],
            ),
            subjects=[
                client.RbacV1Subject(
                    kind="ServiceAccount", name=SERVICE_ACCOUNT, namespace=namespace
                )
            ],
        )
    )
    minted = core.create_namespaced_service_account_token(
        SERVICE_ACCOUNT,
        namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
        ),
    ).status
    assert minted is not None
    config = yaml.safe_load(control_plane.kubeconfig.read_text())
    for user in config["users"]:
        user["user"] = {"token": minted.token}
    path = tmp_path / "kube-state-metrics.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    try:
        yield path
    finally:
        rbac.delete_cluster_role_binding(binding)  # the ServiceAccount goes with the namespace


@dataclass
class KubeStateMetrics:
    process: subprocess.Popen[bytes]
    log_file: Path
    url: str

    def series(self) -> Series | None:
        """The series now exported, or None while it does not listen yet."""
        if self.process.poll() is not None:  # not an AssertionError: no waiting hides it
            raise RuntimeError(f"kube-state-metrics exited: {self.log_file.read_text()[-3000:]}")
        try:
            return samples(httpx.get(self.url, timeout=5).text)
        except httpx.TransportError:
            return None


@pytest.fixture
def kube_state_metrics_process(
    kube_state_metrics: Path, token_kubeconfig: Path, tmp_path: Path
) -> Iterator[KubeStateMetrics]:
    """kube-state-metrics with the shipped config only, on loopback, stopped afterwards."""
    port = free_port()
    log_file = tmp_path / "kube-state-metrics.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [
                str(kube_state_metrics),
                f"--kubeconfig={token_kubeconfig}",
                "--custom-resource-state-only",
                f"--custom-resource-state-config-file={CONFIG}",
                "--host=127.0.0.1",
                f"--port={port}",
                "--telemetry-host=127.0.0.1",
                f"--telemetry-port={free_port()}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield KubeStateMetrics(process, log_file, f"http://127.0.0.1:{port}/metrics")
    finally:
        stop_group(process.pid, timeout=15, running=lambda: process.poll() is None)
        print(log_file.read_text()[-3000:])


def test_models_of_every_phase_and_their_source_are_exported_as_documented(
    kube_state_metrics_process: KubeStateMetrics,
    egp: FakeEGPServer,
    mirror: Mirror,
    namespace: str,
) -> None:
    upstream = generate_models(len(STATUSES), seed=91)
    for model, status in zip(upstream, STATUSES, strict=True):
        model["status"] = status
    egp.add_models(upstream)
    started = time.time()
    start_source(mirror, egp)
    wait_mirrored(mirror, len(upstream))
    gone = upstream[-1]["id"]
    egp.delete_model(gone)
    source = sync_now(mirror)
    mirrored = mirror.by_model_id()
    assert mirrored[gone]["status"]["phase"] == "Missing"

    # What the config promises: each model's phase, and its Ready condition (True only for
    # upstream ready, reason = phase), by its upstream status; the source Ready and Synced; the
    # other conditions (Synced, kstatus' Reconciling/Stalled) as the objects have them.
    expected: Series = {}
    for model in upstream:
        obj = mirrored[model["id"]]
        labels = {
            "namespace": namespace,
            "name": obj["metadata"]["name"],
            "source": "src",
            "model_id": model["id"],
            "vendor": model["model_vendor"],
            "customresource_group": GROUP,
            "customresource_kind": "EGPModel",
            "customresource_version": VERSION,
        }
        phase = STATUSES[model["status"]]
        for state in PHASES:
            key = frozenset({**labels, "phase": state}.items())
            expected["kube_egpmodel_status_phase", key] = float(state == phase)
        # When the phase began, as the Unix time PromQL's time() compares it with: for the
        # model first seen deploying, its upstream created_at; for the others, the cycle that
        # first saw them in their phase, during this test.
        since = unix_time(obj["status"]["phaseSince"])
        if phase == "Deploying":
            assert since == int(unix_time(model["created_at"])), obj["status"]
        else:
            assert int(started) <= since <= time.time(), obj["status"]
        expected["kube_egpmodel_status_phase_since", frozenset(labels.items())] = since
        conditions = {
            c["type"]: (c["reason"], c["status"] == "True") for c in obj["status"]["conditions"]
        }
        conditions["Ready"] = (phase, phase == "Ready")
        for type_, (reason, true) in conditions.items():
            key = frozenset({**labels, "type": type_, "reason": reason}.items())
            expected["kube_egpmodel_status_condition", key] = float(true)
    labels = {
        "namespace": namespace,
        "name": "src",
        "customresource_group": GROUP,
        "customresource_kind": "EGPSource",
        "customresource_version": VERSION,
    }
    conditions = {
        c["type"]: (c["reason"], c["status"] == "True") for c in source["status"]["conditions"]
    }
    conditions |= {"Ready": ("AccountReachable", True), "Synced": ("Synced", True)}
    for type_, (reason, true) in conditions.items():
        key = frozenset({**labels, "type": type_, "reason": reason}.items())
        expected["kube_egpsource_status_condition", key] = float(true)
    expected["kube_egpsource_status_models", frozenset(labels.items())] = len(upstream)

    def ours(series: Series) -> dict[str, float]:
        """This test's series, written as PromQL would select them, for a readable diff."""
        return {
            name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(pairs)) + "}": value
            for (name, pairs), value in series.items()
            if name.startswith("kube_egp") and ("namespace", namespace) in pairs
        }

    exported: Series = {}

    def as_expected() -> bool:
        exported.clear()
        exported.update(kube_state_metrics_process.series() or {})
        return ours(exported) == ours(expected)

    try:
        eventually(as_expected, timeout=60, what="kube-state-metrics to export what is expected")
    except AssertionError:
        assert ours(exported) == ours(expected)  # pytest's diff: what it exports instead
        raise
    # And what it exports is what the config's header says it exports.
    names: dict[str, set[str]] = {}
    for name, pairs in expected:
        names.setdefault(name, set()).update(label for label, _ in pairs)
    assert names == documented()
