"""Whole sync cycles (the real EGP client over real HTTP, the planner, the applier against an
in-memory Kubernetes) fed hostile models by the local EGP server: what the source reports, and
that every object, label, metric series and Event stays within its bound."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from egp_operator import metrics
from egp_operator.bounds import MAX_EVENTS_PER_CYCLE, MAX_MODEL_ID_LENGTH, MAX_STATUS_BYTES
from egp_operator.kube import core_path
from egp_operator.settings import Settings
from egp_operator.sync.cycle import SourceSyncer
from egp_operator.sync.mirrored import MirroredModel, StoredStatus
from egp_testbench.fake_egp import FakeEGPServer, generate_models
from egp_testbench.fake_kube import FakeKube

KEY, ACCOUNT, NAMESPACE, SOURCE = "sk-hostile-models-1", "acct-hostile", "team-a", "hostile"
HUGE = "x" * 3_000_000


@pytest.fixture
def egp() -> Iterator[FakeEGPServer]:
    with FakeEGPServer(api_key=KEY, account_id=ACCOUNT) as server:
        yield server


def source(egp: FakeEGPServer) -> dict[str, Any]:
    return {
        "metadata": {"namespace": NAMESPACE, "name": SOURCE, "uid": "uid-h", "generation": 1},
        "spec": {
            "baseURL": egp.url,
            "accountID": ACCOUNT,
            "credentialsSecretRef": {"name": "creds"},
            "pageSize": 1000,
        },
    }


def kube() -> FakeKube:
    encoded = base64.b64encode(KEY.encode()).decode()
    secret = {"metadata": {"namespace": NAMESPACE, "name": "creds"}, "data": {"apiKey": encoded}}
    return FakeKube({core_path(NAMESPACE, "secrets", "creds"): secret})


def hostile_models() -> list[dict[str, Any]]:
    models = generate_models(5_000, seed=51)
    for index, model in enumerate(models):
        model["model_vendor"] = f"vendor-{index}"  # 5,000 vendors nobody documents
    models[0] |= {"status": HUGE, "model_type": HUGE, "status_reason": HUGE}
    models[1] |= {"name": "launch\n", "model_vendor": "launch\n"}
    models[2]["id"] = "i" * (MAX_MODEL_ID_LENGTH + 1)
    return models


async def test_hostile_models_are_mirrored_within_every_bound(egp: FakeEGPServer) -> None:
    egp.add_models(hostile_models())
    cluster = kube()

    # A 9 MB page: past the default page cap, so the cap is raised to see what mirroring does.
    settings = Settings(max_page_bytes=16 * 1024 * 1024)
    async with SourceSyncer(cluster, settings) as syncer:
        report = await syncer.run_cycle(source(egp), [])

    assert report.outcome.reason == "Synced"
    assert "4999 models" in report.outcome.message
    assert "1 not mirrored: an id longer than 253 characters" in report.outcome.message
    for body in cluster.status_writes():
        value = body["status"] if "status" in body else body[0]["value"]
        assert len(json.dumps(value, separators=(",", ":"))) <= MAX_STATUS_BYTES
    for _, path, body in cluster.requests:
        if path.endswith("/egpmodels") and isinstance(body, dict):
            labels = body["metadata"]["labels"]
            assert all(len(v) <= 63 and "\n" not in v for v in labels.values())
    vendors = {
        sample.labels["vendor"]
        for family in REGISTRY.collect()
        if family.name == "egp_operator_models"
        for sample in family.samples
        if (sample.labels["namespace"], sample.labels["source"]) == (NAMESPACE, SOURCE)
    }
    assert vendors == {metrics.OTHER_VENDOR}


async def test_five_thousand_models_changing_phase_make_a_bounded_number_of_events(
    egp: FakeEGPServer,
) -> None:
    models = generate_models(5_000, seed=52)
    egp.add_models(models)
    cluster = kube()
    async with SourceSyncer(cluster, Settings()) as syncer:
        first = await syncer.run_cycle(source(egp), [])
        assert first.plan is not None
        mirrored = [
            MirroredModel(
                c.name, c.model_id, c.labels, StoredStatus.of(c.status), controller_uid="uid-h"
            )
            for c in first.plan.creates
        ]
        flipped = {"ready": "failed", "failed": "ready", "deploying": "ready"}
        for status, to in flipped.items():
            egp.update_models(
                {"status": to}, ids=[m["id"] for m in models if m["status"] == status]
            )
        cluster.requests.clear()

        report = await syncer.run_cycle(source(egp), mirrored)

    assert report.outcome.reason == "Synced"
    events = [body for verb, path, body in cluster.requests if path.endswith("/events")]
    assert len(events) == MAX_EVENTS_PER_CYCLE + 1
    summary = next(e for e in events if e["involvedObject"]["kind"] == "EGPSource")
    assert summary["reason"] == "PhaseChanges"
