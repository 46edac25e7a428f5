"""Sharding: more sources than one process can serve are split between operator Deployments on
disjoint namespace sets (`egp-operator run --namespace ...`), each with its own peering name.
Two shards run here as two processes: each mirrors its own namespaces and never writes another's,
and an operator that would serve a namespace a live shard serves refuses to start."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from egp_operator.peering import PEERING_LABEL
from egp_testbench.cluster import LocalControlPlane
from egp_testbench.fake_egp import FakeEGPServer, generate_models
from egp_testbench.operator_process import OPERATOR_COMMAND
from tests.e2e.harness import (
    Mirror,
    OperatorProcess,
    running_operator,
    scrape,
    start_source,
    wait_mirrored,
)
from tests.e2e.polling import eventually

SHARDS = {"egp-shard-a": ("a1", "a2"), "egp-shard-b": ("b1", "b2")}
SELECTOR = "=".join(PEERING_LABEL)


@pytest.fixture
def tenant_namespaces(api: Any) -> Iterator[dict[str, str]]:
    """A fresh namespace per short name (`a1` ... `c1`), deleted afterwards."""
    core = client.CoreV1Api(api)
    suffix = uuid.uuid4().hex[:6]
    names = {short: f"e2e-{short}-{suffix}" for short in ("a1", "a2", "b1", "b2", "c1")}
    for name in names.values():
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield names
    for name in names.values():
        core.delete_namespace(name)


def live_cluster_wide_peers(api: Any) -> list[str]:
    """Replicas of a cluster-wide egp-operator still announced (an earlier module's, until
    their peering lifetime ends)."""
    peerings = client.CustomObjectsApi(api).list_cluster_custom_object(
        "kopf.dev", "v1", "clusterkopfpeerings", label_selector=SELECTOR
    )
    return [peer for item in peerings["items"] for peer in (item.get("status") or {})]


def shard_command(namespaces: list[str]) -> tuple[str, ...]:
    return (*OPERATOR_COMMAND, *(arg for ns in namespaces for arg in ("--namespace", ns)))


def synced_namespaces(shard: OperatorProcess) -> set[str]:
    """The namespaces whose sources this process has run a cycle for, from its metrics."""
    return {
        dict(labels)["namespace"]
        for (name, labels), value in scrape(shard).items()
        if name == "egp_operator_sync_duration_seconds_count" and value > 0
    }


def test_two_shards_mirror_their_own_namespaces_and_nothing_else(
    control_plane: LocalControlPlane,
    crds_installed: list[str],
    api: Any,
    egp: FakeEGPServer,
    tenant_namespaces: dict[str, str],
    tmp_path: Path,
) -> None:
    egp.add_models(generate_models(3, seed=41))
    mirrors = {short: Mirror(api, name) for short, name in tenant_namespaces.items()}
    for mirror in mirrors.values():
        start_source(mirror, egp)
    eventually(
        lambda: not live_cluster_wide_peers(api),
        timeout=90,
        what="no cluster-wide egp-operator to be alive (an earlier module's)",
    )

    with contextlib.ExitStack() as shards:
        served = {
            peering_name: shards.enter_context(
                running_operator(
                    control_plane.kubeconfig,
                    tmp_path / f"{peering_name}.log",
                    command=shard_command([tenant_namespaces[s] for s in shorts]),
                    peering_name=peering_name,
                )
            )
            for peering_name, shorts in SHARDS.items()
        }
        for short in ("a1", "a2", "b1", "b2"):
            wait_mirrored(mirrors[short], 3)
        for peering_name, shorts in SHARDS.items():
            expected = {tenant_namespaces[s] for s in shorts}
            eventually(
                lambda shard=served[peering_name], expected=expected: (
                    synced_namespaces(shard) == expected
                ),
                what=f"{peering_name} to have synced exactly {sorted(expected)}",
            )
        # Each shard announces itself only in its own namespaces, under its own name.
        peerings = client.CustomObjectsApi(api).list_cluster_custom_object(
            "kopf.dev", "v1", "kopfpeerings", label_selector=SELECTOR
        )["items"]
        placed = {
            (item["metadata"]["name"], item["metadata"]["namespace"])
            for item in peerings
            if item["metadata"]["namespace"] in tenant_namespaces.values()
        }
        assert placed == {
            (peering_name, tenant_namespaces[s])
            for peering_name, shorts in SHARDS.items()
            for s in shorts
        }
        # A namespace no shard serves stays untouched.
        assert mirrors["c1"].models() == []
        assert mirrors["c1"].source_condition("src", "Synced") == {}

        # A third shard that would also serve a2, and a cluster-wide operator, both refuse.
        for label, command in (
            ("shard-c", shard_command([tenant_namespaces["a2"], tenant_namespaces["c1"]])),
            ("cluster-wide", OPERATOR_COMMAND),
        ):
            intruder = OperatorProcess(
                control_plane.kubeconfig,
                tmp_path / f"{label}.log",
                command=command,
                peering_name=f"egp-{label}",
            )
            try:
                eventually(
                    lambda intruder=intruder: not intruder.alive(),
                    timeout=60,
                    what=f"the {label} one to exit",
                )
                assert intruder.process.returncode != 0
                assert "another egp-operator already serves" in intruder.log()
                assert "egp-shard-a" in intruder.log()
            finally:
                intruder.stop()
        assert mirrors["c1"].models() == []
        assert served["egp-shard-a"].alive()
        assert served["egp-shard-b"].alive()
