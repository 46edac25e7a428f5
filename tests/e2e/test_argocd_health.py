"""What Argo CD says about our objects: the health scripts of deploy/monitoring/argocd-health.yaml
run under gopher-lua as Argo CD runs them (tools/argocd-health), on real objects of every phase
from the local control plane, and on the shapes an object passes through briefly (no status
yet, a spec not yet observed) that a running operator rarely shows long enough to catch."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from egp_operator.resources.crds import UNOBSERVED_STATUS
from egp_testbench.fake_egp import FakeEGPServer, generate_models
from tests.e2e.harness import (
    EGP_ACCOUNT,
    ONE_CYCLE,
    Mirror,
    start_source,
    sync_now,
    wait_mirrored,
)
from tests.e2e.polling import eventually

HEALTH = Path(__file__).parents[2] / "deploy" / "monitoring" / "argocd-health.yaml"
REASON = "Container exited with code 137 (OOMKilled)"


def health(tool: Path, kind: str, objects: list[dict[str, Any]], tmp: Path) -> list[Any]:
    script = tmp / f"{kind}.lua"
    data = yaml.safe_load(HEALTH.read_text())["data"]
    script.write_text(data[f"resource.customizations.health.egp-operator.io_{kind}"])
    answer = subprocess.run(
        [str(tool), str(script)], input=json.dumps(objects), capture_output=True, text=True
    )
    assert answer.returncode == 0, answer.stderr
    verdicts = [json.loads(line) for line in answer.stdout.splitlines()]
    assert all("error" not in verdict for verdict in verdicts), verdicts
    return verdicts


@pytest.mark.usefixtures("operator")
def test_models_of_every_phase_get_the_documented_health(
    argocd_health: Path, egp: FakeEGPServer, mirror: Mirror, tmp_path: Path
) -> None:
    statuses = ("ready", "deploying", "failed", "deployment_timeout", "paused", "gone")
    upstream = generate_models(len(statuses), seed=71)
    for model, status in zip(upstream, statuses, strict=True):
        model |= {"status": status, "status_reason": REASON}
    egp.add_models(upstream)
    start_source(mirror, egp)
    wait_mirrored(mirror, len(statuses))
    egp.delete_model(upstream[-1]["id"])
    sync_now(mirror)
    mirrored = mirror.by_model_id()

    verdicts = health(
        argocd_health, "EGPModel", [mirrored[model["id"]] for model in upstream], tmp_path
    )

    by_status = dict(zip(statuses, (verdict["status"] for verdict in verdicts), strict=True))
    assert by_status == {
        "ready": "Healthy",
        "deploying": "Progressing",
        "failed": "Degraded",
        "deployment_timeout": "Degraded",
        "paused": "Progressing",  # Unknown: a status this version does not know
        "gone": "Degraded",  # Missing
    }
    assert verdicts[2]["message"] == f"Failed: {REASON}"


@pytest.mark.usefixtures("operator")
def test_sources_get_healthy_degraded_or_suspended(
    argocd_health: Path, egp: FakeEGPServer, mirror: Mirror, tmp_path: Path
) -> None:
    egp.add_models(generate_models(2, seed=72))
    start_source(mirror, egp)
    mirror.create_secret("revoked-credentials", "sk-revoked-11111111")
    mirror.create_source("revoked", egp.url, accountID=EGP_ACCOUNT)
    mirror.create_secret("paused-credentials", "sk-unused-22222222")
    mirror.create_source("paused", egp.url, accountID=EGP_ACCOUNT, suspend=True)

    def verdicts() -> dict[str, str] | None:
        sources = [mirror.source(name) for name in ("src", "revoked", "paused")]
        found = [v["status"] for v in health(argocd_health, "EGPSource", sources, tmp_path)]
        expected = ["Healthy", "Degraded", "Suspended"]
        return (
            dict(zip(("src", "revoked", "paused"), found, strict=True))
            if found == expected
            else None
        )

    assert eventually(verdicts, timeout=ONE_CYCLE, what="each source's health")


# ---- shapes an object passes through ----------------------------------------------------------


def _condition(type_: str, status: str, reason: str, message: str = "") -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


def _model(phase: str | None, ready: str = "False") -> dict[str, Any]:
    if phase is None:
        return {"metadata": {"name": "m"}, "spec": {"modelID": "x"}}
    return {
        "metadata": {"name": "m"},
        "status": {
            "phase": phase,
            "conditions": [
                _condition("Ready", ready, phase, "EGP reports it"),
                _condition("Synced", "True", "Synced"),
            ],
        },
    }


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (_model("Ready", ready="True"), "Healthy"),
        (_model("Deploying"), "Progressing"),
        (_model("Failed"), "Degraded"),
        (_model("DeploymentTimeout"), "Degraded"),
        (_model("Missing"), "Degraded"),
        (_model("Unknown"), "Progressing"),
        (_model(None), "Progressing"),
        ({**_model(None), "status": dict(UNOBSERVED_STATUS)}, "Progressing"),
        ({"metadata": {"name": "m"}, "status": {"phase": "Deploying"}}, "Progressing"),
    ],
    ids=[
        "ready",
        "deploying",
        "failed",
        "timeout",
        "missing",
        "unknown",
        "no-status",
        "new",  # as the API server shows it before the operator's first write
        "no-conditions",
    ],
)
def test_shapes_a_model_passes_through_get_their_health(
    argocd_health: Path, model: dict[str, Any], expected: str, tmp_path: Path
) -> None:
    (verdict,) = health(argocd_health, "EGPModel", [model], tmp_path)

    assert verdict["status"] == expected
    assert verdict["message"]


def _source(
    ready: str | None, synced: str | None, *, reason: str = "Synced", generation: int = 1
) -> dict[str, Any]:
    conditions = []
    if ready is not None:
        conditions.append(_condition("Ready", ready, "AccountReachable"))
    if synced is not None:
        conditions.append(_condition("Synced", synced, reason, "why"))
    source: dict[str, Any] = {
        "metadata": {"name": "s", "generation": generation},
        "spec": {"credentialsSecretRef": {"name": "c"}},
    }
    if conditions:
        source["status"] = {"conditions": conditions, "observedGeneration": 1}
    return source


@pytest.mark.parametrize(
    ("source", "expected", "says"),
    [
        (_source("True", "True"), "Healthy", ""),
        (_source("False", "False", reason="AuthenticationFailed"), "Degraded", "Ready"),
        (_source("True", "False", reason="IncompleteListing"), "Degraded", "IncompleteListing"),
        (_source(None, None), "Progressing", ""),
        ({**_source(None, None), "status": dict(UNOBSERVED_STATUS)}, "Progressing", ""),
        (_source("True", "True", generation=2), "Progressing", "latest spec"),
        (
            {**_source("True", "True"), "spec": {"suspend": True}},
            "Suspended",
            "suspend",
        ),
    ],
    ids=["synced", "unreachable", "incomplete", "no-status", "new", "spec-changed", "suspended"],
)
def test_shapes_a_source_passes_through_get_their_health(
    argocd_health: Path, source: dict[str, Any], expected: str, says: str, tmp_path: Path
) -> None:
    (verdict,) = health(argocd_health, "EGPSource", [source], tmp_path)

    assert verdict["status"] == expected
    assert says in verdict["message"]
