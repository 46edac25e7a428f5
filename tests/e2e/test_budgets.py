"""What one tenant can make the operator's shared parts carry, driven through the real operator
on the local control plane: the objects a source keeps (Missing ones included), a namespace's
ResourceQuota, EGPModels the operator did not make, and how often anything can wake a loop."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from egp_operator.resources.models import GROUP, MODEL_PLURAL, VERSION
from egp_testbench.cluster import LocalControlPlane
from egp_testbench.fake_egp import FakeEGPServer, generate_models
from tests.e2e.harness import (
    EGP_KEY,
    ONE_CYCLE,
    Mirror,
    OperatorProcess,
    running_operator,
    start_source,
    sync_now,
    wait_mirrored,
)
from tests.e2e.polling import eventually
from tests.integration.hostile_server import Chunked, HostileServer, InterimFlood, TrickleHead

#: The object budget of every source in this module: small, so that a test can pass it.
BUDGET = 10


@pytest.fixture(scope="module")
def operator(
    control_plane: LocalControlPlane, peering: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    with running_operator(
        control_plane.kubeconfig,
        tmp_path_factory.mktemp("operator") / "operator.log",
        status_heartbeat_seconds="3600",
        egp_timeout_seconds="3",
        egp_max_retries="0",
        max_models_per_source=str(BUDGET),
    ) as replica:
        yield replica


pytestmark = pytest.mark.usefixtures("operator")


def source_events(mirror: Mirror, reason: str) -> list[Any]:
    return [e for e in mirror.events_for("src") if e.reason == reason]


def test_an_account_whose_ids_change_at_every_listing_keeps_at_most_the_budget(
    egp: FakeEGPServer, mirror: Mirror
) -> None:
    """Under the default Retain, every vanished model used to stay Missing forever: a rotating
    account grew a source's EGPModels by a listing's worth at every cycle."""
    egp.add_models(generate_models(6, seed=61))
    start_source(mirror, egp)
    wait_mirrored(mirror, 6)

    for rotation in range(3):
        for model in egp.models():
            egp.delete_model(model["id"])
        egp.add_models(generate_models(6, seed=62 + rotation))
        source = sync_now(mirror)

        held = mirror.models()
        assert len(held) <= BUDGET
        listed = {m["id"] for m in egp.models()}
        assert listed <= {m["spec"]["modelID"] for m in held}, "a listed model was dropped"
    synced = next(c for c in source["status"]["conditions"] if c["type"] == "Synced")
    assert "longest missing first" in synced["message"]
    [pruned, *_] = source_events(mirror, "MissingPruned")
    assert pruned.type == "Warning"
    assert f"at most {BUDGET} EGPModels" in pruned.message


def test_a_create_refused_by_the_namespace_quota_is_a_clear_reason_and_heals(
    egp: FakeEGPServer, mirror: Mirror, api: Any
) -> None:
    egp.add_models(generate_models(8, seed=63))
    quota = client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name="egpmodels"),
        spec=client.V1ResourceQuotaSpec(hard={f"count/{MODEL_PLURAL}.{GROUP}": "5"}),
    )
    core = client.CoreV1Api(api)
    core.create_namespaced_resource_quota(mirror.namespace, quota)
    eventually(
        lambda: core.read_namespaced_resource_quota("egpmodels", mirror.namespace).status.hard,
        what="the quota to be counted",
    )

    start_source(mirror, egp)

    synced = eventually(
        lambda: (
            mirror.source_condition("src", "Synced").get("reason") == "QuotaExceeded"
            and mirror.source_condition("src", "Synced")
        ),
        timeout=ONE_CYCLE,
        what="the source to report the quota",
    )
    assert synced["status"] == "False"
    assert "3 EGPModel(s) not created" in synced["message"]
    assert "exceeded quota" in synced["message"]
    assert mirror.source_condition("src", "Stalled")["status"] == "True"
    assert len(mirror.models()) == 5

    core.patch_namespaced_resource_quota(
        "egpmodels", mirror.namespace, {"spec": {"hard": {f"count/{MODEL_PLURAL}.{GROUP}": "10"}}}
    )
    eventually(
        lambda: (
            core.read_namespaced_resource_quota("egpmodels", mirror.namespace).status.hard[
                f"count/{MODEL_PLURAL}.{GROUP}"
            ]
            == "10"
        ),
        what="the raised quota",
    )
    sync_now(mirror)
    wait_mirrored(mirror, 8)
    assert mirror.source_condition("src", "Synced")["status"] == "True"


def test_an_egpmodel_made_by_hand_for_the_source_is_reported_and_left_alone(
    egp: FakeEGPServer, mirror: Mirror
) -> None:
    """It names the source and a listed model, without the source's controller ownerReference:
    the operator used to adopt it, write its status and delete its own mirror as a duplicate."""
    models = generate_models(2, seed=64)
    egp.add_models(models)
    lookalike = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "EGPModel",
        "metadata": {"name": "made-by-hand", "labels": {"team": "a"}},
        "spec": {"sourceRef": {"name": "src"}, "modelID": models[0]["id"]},
    }
    mirror.custom.create_namespaced_custom_object(
        GROUP, VERSION, mirror.namespace, MODEL_PLURAL, lookalike
    )

    start_source(mirror, egp)

    events = eventually(
        lambda: source_events(mirror, "UnownedModelsIgnored"),
        timeout=ONE_CYCLE,
        what="the look-alike to be reported",
    )
    assert "made-by-hand" in events[0].message
    own = eventually(
        lambda: (
            [m for m in mirror.models() if m["metadata"].get("ownerReferences")]
            if len([m for m in mirror.models() if m.get("status", {}).get("phase")]) == 2
            else None
        ),
        timeout=ONE_CYCLE,
        what="the source's own two mirrors",
    )
    assert {m["spec"]["modelID"] for m in own} == {m["id"] for m in models}
    sync_now(mirror)
    untouched = mirror.custom.get_namespaced_custom_object(
        GROUP, VERSION, mirror.namespace, MODEL_PLURAL, "made-by-hand"
    )
    assert "phase" not in untouched.get("status", {})  # only the CRD's default status
    assert untouched["metadata"]["labels"] == {"team": "a"}
    assert len(source_events(mirror, "UnownedModelsIgnored")) == 1  # said once, not per cycle


def test_a_burst_of_sync_requests_to_a_failing_source_runs_one_cycle(
    egp: FakeEGPServer, mirror: Mirror
) -> None:
    """Each request used to wake the loop at once and cut its backoff short: 59 cycles in
    3 s. Now a request is honoured no sooner than 10 s after the last cycle began, and the
    requests meanwhile are one."""
    egp.add_models(generate_models(1, seed=65))
    mirror.create_secret("src-credentials", "sk-e2e-not-a-valid-key")
    mirror.create_source("src", egp.url, accountID="acct-e2e")
    eventually(
        lambda: mirror.source_condition("src", "Ready").get("reason") == "AuthenticationFailed",
        timeout=ONE_CYCLE,
        what="the source's first, failing cycle",
    )
    egp.reset_request_log()

    last = ""
    for _ in range(25):
        last = f"burst-{uuid.uuid4().hex[:8]}"
        mirror.request_sync("src", last)
    eventually(
        lambda: mirror.source("src").get("status", {}).get("lastHandledSyncRequest") == last,
        timeout=ONE_CYCLE,
        what="the burst's last request to be handled",
    )

    refused = [r for r in egp.recent_requests() if r["endpoint"] == "list"]
    assert 1 <= len(refused) <= 2
    assert {r["status"] for r in refused} == {401}
    assert EGP_KEY not in str(mirror.source("src"))


def test_a_healthy_tenant_keeps_syncing_beside_hostile_endpoints(
    egp: FakeEGPServer, mirror: Mirror, api: Any
) -> None:
    """Another tenant points sources at endpoints that trickle a header forever, flood
    interim answers, or send a page as 1-byte chunks with 4 KiB of extensions each: each
    ends as a bounded failure of its own, and the healthy source's sync request is honoured
    within a cycle all along."""
    hostile = {
        "trickle": TrickleHead(interval=0.2, total=1_000_000),
        "interim": InterimFlood(count=1_000_000),
        "extensions": Chunked(body=b'{"items":[]}' * 2000, chunk_size=1, extension_bytes=4096),
    }
    other = f"hostile-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=other)))
    tenant = Mirror(api, other)
    with contextlib.ExitStack() as servers:
        for name, behaviour in hostile.items():
            endpoint = servers.enter_context(HostileServer(behaviour))
            tenant.create_secret(f"{name}-credentials", EGP_KEY)
            tenant.create_source(name, endpoint.url, accountID="acct-e2e")
        egp.add_models(generate_models(5, seed=66))
        start_source(mirror, egp)
        wait_mirrored(mirror, 5)

        for round_ in range(3):
            egp.add_models(generate_models(1, seed=67 + round_))
            sync_now(mirror)  # within one cycle, or it fails
            wait_mirrored(mirror, 6 + round_)

        reasons = {
            name: eventually(
                lambda name=name: tenant.source_condition(name, "Synced").get("reason"),
                timeout=120,
                what=f"the {name} source's first cycle to end",
            )
            for name in hostile
        }
    assert reasons["interim"] == reasons["extensions"] == "ResponseTooLarge"
    assert reasons["trickle"] in ("TransportError", "DeadlineExceeded", "Progressing")
    core.delete_namespace(other)
